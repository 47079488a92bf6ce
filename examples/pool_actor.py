"""A pool of actors that is itself an actor: shared by name, fair, bounded, self-healing.

Demonstrates ``actorflow.util.PoolActor``:
  * a named pool of 2 ``Embedder`` actors, reached with ``actorflow.get_actor`` from a task;
  * ``await pool.submit.remote(method, *args)`` from the driver and from another actor at once,
    handed out round-robin over the callers;
  * back-pressure: ``block=False`` fails at once with ``PoolFullError`` when the queue is full;
  * a member killed while it works: the pool starts another and retries the call
    (``max_task_retries``), and ``stats()`` counts the restart.

Usage:
    python examples/pool_actor.py
"""

import asyncio
import time

import actorflow
from actorflow.util import PoolActor, PoolFullError


@actorflow.remote
class Embedder:
    def __init__(self, dims: int) -> None:
        self.dims = dims

    def embed(self, text: str) -> list:
        time.sleep(0.01)
        return [len(text) % (i + 2) for i in range(self.dims)]

    def slow(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"


@actorflow.remote
def from_a_task(text: str) -> list:
    pool = actorflow.get_actor("embed")  # any job of the namespace finds the pool by name
    return actorflow.get(pool.submit.remote("embed", text))


@actorflow.remote
class Client:
    async def run(self, n: int) -> int:
        pool = await actorflow.get_actor_async("embed")
        vectors = await asyncio.gather(*[pool.submit.remote("embed", "x" * i) for i in range(n)])
        return len(vectors)


async def main() -> None:
    pool = PoolActor.options(name="embed").remote(
        Embedder, size=2, init_args=(3,), max_queued=4, max_task_retries=1
    )
    print("embed('hello') ->", await pool.submit.remote("embed", "hello"))
    print("from a task ->", await from_a_task.remote("hello"))

    client = Client.remote()
    theirs = client.run.remote(10)
    ours = await asyncio.gather(*[pool.submit.remote("embed", "y" * i) for i in range(10)])
    print(f"driver got {len(ours)} vectors, the client actor got {await theirs}")

    # Fill both members and the queue (max_queued=4), then ask without waiting.
    busy = [pool.submit.remote("slow", 0.5) for _ in range(6)]
    while (await pool.stats.remote())["queued"] < 4:
        await asyncio.sleep(0.02)
    try:
        await pool.submit.remote("embed", "z", block=False)
    except PoolFullError as exc:
        reason = str(exc).splitlines()[-1].split(": ", 1)[1]
        print("full pool, block=False -> PoolFullError:", reason)
    print("the busy calls:", await asyncio.gather(*busy))

    # Kill a member in the middle of a call: the call is retried on its replacement.
    running = pool.submit.remote("slow", 0.5)
    while (await pool.stats.remote())["running"] < 1:
        await asyncio.sleep(0.02)
    for member in await pool.members.remote():
        actorflow.kill(member)
        break
    print("call on a killed member ->", await running)
    stats = await pool.stats.remote()
    print(
        f"restarts {stats['restarts']}, members {len(stats['members'])}, "
        f"completed {stats['completed']}"
    )
    actorflow.kill(pool)


if __name__ == "__main__":
    actorflow.init()
    asyncio.run(main())
    actorflow.shutdown()
