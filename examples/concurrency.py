"""Concurrent method calls inside one actor: async actors and threaded actors.

Demonstrates:
  * an async actor (its methods are ``async def``) created with
    ``.options(max_concurrency=5)``: up to 5 calls interleave on the actor's
    event loop while they ``await asyncio.sleep``;
  * a threaded actor (plain ``def`` methods) created with
    ``.options(max_concurrency=3)``: up to 3 calls run at once in a thread
    pool while they block in ``time.sleep``;
  * the default, ``max_concurrency=1``: calls run one after another.

Each run makes 10 calls that take 0.5 s each: serially that is 5 s; with 5
concurrent slots about 1 s; with 3 slots about 2 s (4 rounds).
"""

import asyncio
import threading
import time

import actorflow

CALLS = 10
DURATION = 0.5


@actorflow.remote
class AsyncActor:
    def __init__(self):
        self.running = 0
        self.max_running = 0

    async def ping(self):
        return "pong"

    async def work(self, i: int) -> int:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        await asyncio.sleep(DURATION)
        self.running -= 1
        return i

    async def peak(self) -> int:
        return self.max_running


@actorflow.remote
class ThreadedActor:
    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def ping(self):
        return "pong"

    def work(self, i: int) -> int:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        time.sleep(DURATION)
        with self.lock:
            self.running -= 1
        return i

    def peak(self) -> int:
        return self.max_running


def timed_calls(actor, label: str) -> float:
    """Make CALLS calls of ``work`` at once and report how long they took."""
    actorflow.get(actor.ping.remote())  # make sure the actor is up first
    start = time.time()
    results = actorflow.get([actor.work.remote(i) for i in range(CALLS)])
    elapsed = time.time() - start
    assert results == list(range(CALLS))
    peak = actorflow.get(actor.peak.remote())
    print(f"{label}: {CALLS} calls of {DURATION} s took {elapsed:.2f} s (at most {peak} at once)")
    return elapsed


def main():
    actorflow.init()

    async_actor = AsyncActor.options(max_concurrency=5).remote()
    async_time = timed_calls(async_actor, "AsyncActor    max_concurrency=5")

    threaded_actor = ThreadedActor.options(max_concurrency=3).remote()
    threaded_time = timed_calls(threaded_actor, "ThreadedActor max_concurrency=3")

    serial_actor = ThreadedActor.remote()
    serial_time = timed_calls(serial_actor, "ThreadedActor max_concurrency=1")

    print(
        f"speed-up over one-at-a-time: async {serial_time / async_time:.1f}x, "
        f"threaded {serial_time / threaded_time:.1f}x"
    )

    actorflow.shutdown()


if __name__ == "__main__":
    main()
