"""An actor mesh: a group of actors created, called, sliced and supervised as one.

Demonstrates ``actorflow.mesh``:
  * ``Shard.mesh({"host": 2, "gpu": 2})``: four actors that know their rank and coordinates;
  * ``broadcast``: one call to every member, awaited (mesh order) or iterated as results arrive;
  * ``reduce``/``sum``: folded on each node's relay, then at the caller;
  * slicing: ``mesh.slice(host=1)`` (a sub-mesh) and ``mesh[0, 1]`` (one member's handle);
  * a member that dies fails only its own part of a broadcast (``MeshMemberDiedError``);
  * the mesh supervised as one child of a ``Supervisor``: the dead member is restarted.

Usage:
    python examples/actor_mesh.py
"""

import asyncio

import numpy as np

import actorflow
from actorflow.mesh import MeshMemberDiedError
from actorflow.supervision import Supervisor, mesh_spec


@actorflow.remote(num_cpus=0)
class Shard:
    def __init__(self, size: int) -> None:
        ctx = actorflow.get_runtime_context()
        self.rank, self.coords = ctx.mesh_rank, ctx.mesh_coords
        rng = np.random.default_rng(self.rank)
        self.weights = rng.standard_normal(size)

    def where(self) -> str:
        return f"rank {self.rank} at {self.coords}"

    def loss(self, batch: np.ndarray) -> float:
        return float(np.mean((batch[: len(self.weights)] - self.weights) ** 2))

    def norm(self) -> float:
        return float(np.linalg.norm(self.weights))


async def main() -> None:
    mesh = Shard.mesh({"host": 2, "gpu": 2}, 1000)
    print(f"mesh {mesh.shape}, {len(mesh)} members")
    for line in await mesh.where.broadcast():
        print(" ", line)

    batch = np.ones(1000)  # large: put in the object store once, shared by every member
    losses = await mesh.loss.broadcast(batch)
    print("losses in mesh order:", [round(v, 3) for v in losses])
    async for rank, loss in mesh.loss.broadcast(batch):
        print(f"  arrived: rank {rank} loss {loss:.3f}")
    total = await mesh.loss.sum(batch)  # each node's relay adds its members' losses first
    print(f"sum of losses {total:.3f} (== {sum(losses):.3f})")
    print("largest norm:", round(await mesh.norm.reduce(max), 3))

    host1 = mesh.slice(host=1)
    print(f"slice host=1: shape {host1.shape}, ranks {host1.ranks}:", await host1.where.broadcast())
    print("mesh[0, 1] is one actor:", await mesh[0, 1].where.remote())

    actorflow.kill(mesh[1, 0])
    results = await mesh.norm.broadcast().gather(return_exceptions=True)
    died = [r for r in results if isinstance(r, MeshMemberDiedError)]
    print(f"after killing rank 2: {len(results) - len(died)} answered, failed: {died[0].rank}")


def supervised() -> None:
    top = Supervisor.start([mesh_spec("shards", Shard, 3, args=(10,))], name="trainer")
    sup = actorflow.get(top.get_child.remote("shards"))
    mesh = actorflow.get(sup.get_mesh.remote())
    actorflow.kill(mesh[1])
    seen, restarted = 0, False
    for _ in range(100):  # the supervisor's log, long-polled, until rank 1 is back
        events = actorflow.get(sup.events.remote(seen, 10))
        restarted = any(e.kind == "restarted" for e in events)
        seen = max([seen, *(e.seq for e in events)])
        if restarted:
            break
    mesh = actorflow.get(sup.get_mesh.remote())  # the members now, rank 1 a new actor
    print("supervised mesh after a restart:", mesh.where.broadcast().get())
    restarts = [c.restarts for c in actorflow.get(sup.which_children.remote())]
    print("restarts per member:", restarts)
    actorflow.get(top.shutdown.remote())


if __name__ == "__main__":
    actorflow.init(num_cpus=2)
    asyncio.run(main())
    supervised()
    actorflow.shutdown()
