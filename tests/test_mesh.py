"""Actor meshes (actorflow.mesh): creation, shape and slicing, broadcast and reduce, failures,
supervision, and the tree fan-out across two nodes."""

from __future__ import annotations

import asyncio
import collections
import os
import pickle

import pytest
from helpers import process_gone

import actorflow
from actorflow.exceptions import ActorDiedError, TaskError
from actorflow.mesh import ActorMesh, MeshMemberDiedError
from actorflow.mesh._shape import View, coords_of, parse_shape
from actorflow.supervision import Supervisor, mesh_spec
from actorflow.util.placement_group import placement_group, placement_group_table
from actorflow.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@actorflow.remote(num_cpus=0)
class Member:
    def __init__(self, base: int = 0) -> None:
        ctx = actorflow.get_runtime_context()
        self.rank = ctx.mesh_rank  # known already in the constructor
        self.base = base
        self.calls = 0

    def place(self):
        ctx = actorflow.get_runtime_context()
        return ctx.mesh_rank, ctx.mesh_coords, ctx.mesh_shape, ctx.get_node_id()

    def add(self, x: int) -> int:
        self.calls += 1
        return self.base + self.rank + x

    def calls_made(self) -> int:
        return self.calls

    def length(self, data) -> int:
        return len(data)

    def fail_on(self, rank: int) -> int:
        if self.rank == rank:
            raise ValueError(f"rank {rank} refuses")
        return self.rank

    def pid(self) -> int:
        return os.getpid()

    def wait_own(self, folder: str) -> int:
        return self.wait_for(os.path.join(folder, str(self.rank)))

    def wait_for(self, path: str) -> int:
        import time

        while not os.path.exists(path):  # released by the test, not by a clock
            time.sleep(0.01)
        return self.rank


# -- shapes (no cluster) ------------------------------------------------------------------------


def test_shapes_ranks_and_slices():
    dims = parse_shape({"host": 2, "gpu": 4})
    assert parse_shape(3) == (("rank", 3),)
    assert coords_of(dims, 6) == {"host": 1, "gpu": 2}
    full = View.full(dims)
    assert full.select({"host": 1}) == View((("gpu", 4),), (4, 5, 6, 7))
    assert full.index((1, 2)) == 6
    assert full.index(slice(0, 1)) == View((("host", 1), ("gpu", 4)), (0, 1, 2, 3))
    sub = full.select({"gpu": slice(1, 3)})
    assert sub == View((("host", 2), ("gpu", 2)), (1, 2, 5, 6))
    assert sub.index((1, 0)) == 5  # a view of a view keeps the global ranks
    assert full.index(-1) == View((("gpu", 4),), (4, 5, 6, 7))
    for bad, error in [
        (0, ValueError),
        ({"host": 0}, ValueError),
        ({}, TypeError),
        ("4", TypeError),
        ({"a b": 2}, ValueError),
        (True, TypeError),
    ]:
        with pytest.raises(error):
            parse_shape(bad)
    with pytest.raises(KeyError, match="no dimension 'node'"):
        full.select({"node": 0})
    with pytest.raises(IndexError, match="out of range"):
        full.select({"gpu": 4})
    with pytest.raises(IndexError, match="too many indices"):
        full.index((0, 0, 0))
    with pytest.raises(IndexError, match="empty"):
        full.select({"gpu": slice(3, 1)})


# -- one node -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_mesh_shape_slicing_rank_and_broadcast(cluster):
    mesh = Member.mesh({"host": 2, "gpu": 2}, 100)
    assert isinstance(mesh, ActorMesh)
    assert len(mesh) == 4 and mesh.shape == {"host": 2, "gpu": 2} and mesh.ranks == [0, 1, 2, 3]
    places = mesh.place.broadcast().get()
    assert [p[0] for p in places] == [0, 1, 2, 3]
    assert places[3][1] == {"host": 1, "gpu": 1} and places[0][2] == {"host": 2, "gpu": 2}

    assert mesh.add.broadcast(1).get() == [101, 102, 103, 104]
    assert actorflow.get(mesh.add.broadcast(0)) == [100, 101, 102, 103]
    assert sorted(mesh.add.broadcast(0)) == [(0, 100), (1, 101), (2, 102), (3, 103)]
    assert mesh.add.sum(1).get() == 410  # reduced on the relay, then here
    assert actorflow.get(mesh.add.reduce(max, 0)) == 103
    assert mesh.add.broadcast(0).sum() == 406  # reduced here

    # Slicing: a sub-mesh keeps the members' own ranks; indexing every dimension: a handle.
    host1 = mesh.slice(host=1)
    assert isinstance(host1, ActorMesh) and host1.shape == {"gpu": 2} and host1.ranks == [2, 3]
    assert host1.add.broadcast(0).get() == [102, 103]
    assert mesh[1:].shape == {"host": 1, "gpu": 2}
    assert mesh[:, 1].ranks == [1, 3]
    one = mesh[1, 0]
    assert isinstance(one, actorflow.actor.ActorHandle)
    assert actorflow.get(one.add.remote(0)) == 102
    assert mesh.slice(host=0, gpu=1) == list(mesh)[1]
    assert [actorflow.get(h.add.remote(0)) for h in mesh] == [100, 101, 102, 103]
    assert mesh.slice(gpu=0).add.sum(0).get() == 202

    # Plain actors are not members.
    assert actorflow.get(Member.remote().__ray_call__.remote(lambda self: self.rank)) is None

    # The caller sends one message per relay (one node here), the relay one per member.
    stats = mesh.relay_stats()
    assert len(stats) == 1 and stats[0]["ranks"] == [0, 1, 2, 3]
    runs_before = stats[0]["runs"]
    mesh.add.broadcast(0).get()
    assert mesh.relay_stats()[0]["runs"] == runs_before + 1
    assert mesh.calls_made.broadcast().get() == [9, 8, 11, 9]
    mesh.kill()


@pytest.mark.timeout(120)
def test_async_await_iterate_and_large_arguments(cluster, monkeypatch):
    mesh = Member.mesh(3)
    assert mesh.shape == {"rank": 3}
    puts = []
    real_put = actorflow.put

    def counting_put(value):
        puts.append(len(value))
        return real_put(value)

    monkeypatch.setattr(actorflow, "put", counting_put)

    async def main():
        assert await mesh.add.broadcast(5) == [5, 6, 7]
        seen = [pair async for pair in mesh.add.broadcast(1)]
        assert sorted(seen) == [(0, 1), (1, 2), (2, 3)]
        assert await mesh.add.sum(0) == 3
        assert await mesh.add.broadcast(0).reduce_async(lambda a, b: a * 10 + b) == 12
        big = b"x" * (2 << 20)
        assert await mesh.length.broadcast(big) == [len(big)] * 3
        return puts

    assert asyncio.run(main()) == [2 << 20]  # put once for all members, not once each
    mesh.kill()


@pytest.mark.timeout(120)
def test_errors_are_per_rank_and_clear(cluster):
    mesh = Member.mesh(3)
    result = mesh.fail_on.broadcast(1)
    with pytest.raises(TaskError, match="rank 1 refuses"):
        result.get()
    values = result.get(return_exceptions=True)
    assert values[0] == 0 and values[2] == 2 and isinstance(values[1], ValueError)
    assert isinstance(dict(result)[1], ValueError)  # iteration yields the error
    with pytest.raises(ValueError, match="rank 1 refuses"):
        mesh.fail_on.reduce(max, 1).get()
    alone = mesh[1:2]  # one member on its node: called straight, the same errors
    assert isinstance(alone.fail_on.broadcast(1).get(return_exceptions=True)[0], ValueError)
    with pytest.raises(ValueError, match="rank 1 refuses"):
        alone.fail_on.sum(1).get()
    assert alone.fail_on.sum(0).get() == 1

    with pytest.raises(AttributeError, match="no method 'nope'"):
        mesh.nope.broadcast()
    with pytest.raises(TypeError, match=r"Member.add\(\)"):
        mesh.add.broadcast()
    with pytest.raises(TypeError, match="broadcast"):
        mesh.add(1)
    with pytest.raises(TypeError, match="function of two values"):
        mesh.add.reduce(3, 1)
    with pytest.raises(ValueError, match="cannot share the name"):
        Member.options(name="m").mesh(2)
    with pytest.raises(ValueError, match="size >= 1"):
        Member.mesh({"x": 0})
    mesh.kill()


@pytest.mark.timeout(120)
def test_a_dropped_mesh_ends_its_actors(cluster, poll_until):
    import gc

    mesh = Member.mesh(3)
    pids = mesh.pid.broadcast().get()
    relay_pids = [
        actorflow.get(relay.__ray_call__.remote(lambda self: os.getpid()))
        for relay, _ in mesh._relays
    ]
    del mesh
    gc.collect()
    poll_until(lambda: all(process_gone(p) for p in [*pids, *relay_pids]), timeout=60)


@actorflow.remote(num_cpus=0)
class Fussy:
    def __init__(self) -> None:
        if actorflow.get_runtime_context().mesh_rank == 1:
            raise RuntimeError("rank 1 will not start")

    def ping(self) -> int:
        return 1


@pytest.mark.timeout(120)
def test_a_member_that_cannot_start_fails_the_mesh(cluster, poll_until):
    with pytest.raises(ActorDiedError, match="mesh member rank 1 of Fussy did not start") as info:
        Fussy.mesh(3)
    assert "rank 1 will not start" in str(info.value)
    from actorflow.util.state import list_actors

    def all_dead():
        rows = list_actors(filters=[("class_name", "=", "Fussy")])
        return len(rows) == 3 and all(r["state"] == "DEAD" for r in rows)

    poll_until(all_dead, timeout=30)  # the members that did start were killed


@actorflow.remote
class Driver:
    async def create_and_call(self):
        blocking = Member.mesh(2)  # waits for its members, blocking this actor's loop (as Ray's
        blocking.kill()  # blocking calls in async actors)
        mesh = await Member.mesh_async(2)
        values = await mesh.add.broadcast(1)
        mesh.kill()
        return len(blocking), values

    async def broadcast(self, mesh):
        return await mesh.add.broadcast(1), await mesh.add.sum(1)


@pytest.mark.timeout(120)
def test_meshes_travel_and_async_actors_make_them(cluster):
    members, values = actorflow.get(Driver.remote().create_and_call.remote())
    assert members == 2 and values == [1, 2]

    mesh = Member.mesh(2, 10)
    copy = pickle.loads(pickle.dumps(mesh))
    assert copy.shape == mesh.shape and copy.add.broadcast(0).get() == [10, 11]

    @actorflow.remote
    def use(mesh, sub):
        return mesh.add.broadcast(0).get(), mesh.add.sum(0).get(), sub.add.broadcast(0).get()

    assert actorflow.get(use.remote(mesh, mesh[1:])) == ([10, 11], 21, [11])
    assert actorflow.get(Driver.remote().broadcast.remote(mesh)) == ([11, 12], 23)
    mesh.kill()


@pytest.mark.timeout(120)
def test_a_member_killed_mid_broadcast(cluster, tmp_path, poll_until):
    mesh = Member.mesh(3)
    release = tmp_path / "release"
    result = mesh.wait_for.broadcast(str(release))
    # The broadcast is with the members (the relay has made its calls): kill rank 1 now.
    poll_until(lambda: mesh.relay_stats()[0]["delivered"] == 3, timeout=30)
    actorflow.kill(mesh[1])
    release.touch()
    values = result.get(return_exceptions=True)
    assert values[0] == 0 and values[2] == 2
    died = values[1]
    assert isinstance(died, MeshMemberDiedError) and isinstance(died, ActorDiedError)
    assert died.rank == 1 and died.coords == {"rank": 1} and "rank 1" in str(died)
    with pytest.raises(MeshMemberDiedError, match="rank 1"):
        result.get()
    assert dict(result)[1] is not None and isinstance(dict(result)[1], ActorDiedError)
    # The others still work; the dead one fails alone in later broadcasts too.
    assert mesh.add.broadcast(0).get(return_exceptions=True)[2] == 2
    with pytest.raises(MeshMemberDiedError, match="rank 1"):
        mesh.add.sum(0).get()
    with pytest.raises(MeshMemberDiedError, match="rank 1"):
        mesh[1:].add.reduce(max, 0).get()
    (alone,) = mesh[1:2].add.broadcast(0).get(return_exceptions=True)  # called straight
    assert isinstance(alone, MeshMemberDiedError) and alone.rank == 1
    mesh.kill()


@pytest.mark.timeout(120)
def test_a_stream_yields_each_member_as_it_answers(cluster, tmp_path, poll_until):
    mesh = Member.mesh(3)  # one node: one relay for all three
    stream = mesh.wait_own.stream(str(tmp_path))
    items = iter(stream)
    (tmp_path / "2").touch()
    assert next(items) == (2, 2)  # while ranks 0 and 1 still wait
    actorflow.kill(mesh[1])
    rank, died = next(items)
    assert rank == 1 and isinstance(died, MeshMemberDiedError) and died.rank == 1
    (tmp_path / "0").touch()
    assert next(items) == (0, 0)
    assert list(items) == []
    with pytest.raises(RuntimeError, match="iterated already"):
        list(stream)

    async def streamed():
        return sorted([pair async for pair in mesh[0:1].add.stream(1)])  # called straight

    assert asyncio.run(streamed()) == [(0, 1)]
    mesh.kill()


@pytest.mark.timeout(180)
def test_a_supervised_mesh_is_restarted(cluster, poll_until):
    for strategy in ("one_for_one", "one_for_all"):
        top = Supervisor.start(
            [mesh_spec("mesh", Member, 3, args=(7,), strategy=strategy)], name=f"app_{strategy}"
        )
        sup = actorflow.get(top.get_child.remote("mesh"))  # waits until the tree has started
        assert sup == actorflow.get_actor(f"app_{strategy}.mesh")
        mesh = actorflow.get(sup.get_mesh.remote())
        assert mesh.add.broadcast(0).get() == [7, 8, 9]
        before = mesh.pid.broadcast().get()
        actorflow.kill(mesh[1])

        def restarted(mesh=mesh, before=before):
            now = mesh.pid.broadcast().get(return_exceptions=True)  # the old handle
            ok = all(isinstance(p, int) for p in now) and now[1] != before[1]
            return now if ok else None

        after = poll_until(restarted, timeout=60)
        if strategy == "one_for_one":
            assert after[0] == before[0] and after[2] == before[2]
        else:
            assert not set(after) & set(before)
        fresh = actorflow.get(sup.get_mesh.remote())
        assert fresh[1] != mesh[1] and fresh.add.broadcast(0).get() == [7, 8, 9]
        ranks = [actorflow.get(h.__ray_call__.remote(lambda self: self.rank)) for h in fresh]
        assert ranks == [0, 1, 2]  # a restarted member keeps its rank
        children = actorflow.get(sup.which_children.remote())
        assert [c.name for c in children] == ["rank0", "rank1", "rank2"]
        actorflow.get(top.shutdown.remote())


# -- two nodes ----------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_mesh_over_two_nodes(local_cluster, monkeypatch):
    local_cluster.add_node(num_cpus=2)
    local_cluster.add_node(num_cpus=2)
    node_ids = {n["node_id"] for n in local_cluster.nodes}
    actorflow.init(address=local_cluster.address)

    # Members spread over the nodes; a relay on each.
    mesh = Member.options(scheduling_strategy="SPREAD").mesh({"host": 2, "gpu": 3})
    places = mesh.place.broadcast().get()
    assert {p[3] for p in places} == node_ids
    stats = mesh.relay_stats()
    assert len(stats) == 2 and sorted(r for s in stats for r in s["ranks"]) == list(range(6))

    # A broadcast to N=6 members on K=2 nodes: the caller submits 2 calls (counted by a hook
    # on this process's call submission), the relays 6.
    from actorflow._private.worker import context

    core = context.ensure_core()
    sent: collections.Counter = collections.Counter()
    real_submit = core.submit_actor_call

    def counting_submit(handle, method, *args, **kwargs):
        sent[method] += 1
        return real_submit(handle, method, *args, **kwargs)

    monkeypatch.setattr(core, "submit_actor_call", counting_submit)
    delivered = sum(s["delivered"] for s in stats)
    assert mesh.add.broadcast(1).get() == [1, 2, 3, 4, 5, 6]
    assert mesh.add.sum(0).get() == 15
    assert sent == {"run": 4}  # two broadcasts, two relays each: K per broadcast, not N

    # A sub-mesh: one message per node it has members on (a node with only one of them gets
    # the call straight: one message either way, one hop less), none to the others.
    sub = mesh.slice(host=0)
    per_node = collections.Counter(places[r][3] for r in sub.ranks)
    runs = {s["ranks"][0]: s["runs"] for s in mesh.relay_stats()}
    sent.clear()
    assert sub.add.broadcast(0).get() == [0, 1, 2]
    assert sum(sent.values()) == len(per_node)
    monkeypatch.setattr(core, "submit_actor_call", real_submit)
    stats = mesh.relay_stats()
    for s in stats:
        node = places[s["ranks"][0]][3]
        assert s["runs"] == runs[s["ranks"][0]] + (per_node[node] > 1)
    assert sum(s["delivered"] for s in stats) == delivered + 12 + sum(
        n for n in per_node.values() if n > 1
    )

    assert sorted(mesh.add.stream(0)) == [(r, r) for r in range(6)]

    # A task on the other node gets the mesh and broadcasts through it.
    @actorflow.remote(num_cpus=1)
    def from_a_task(mesh):
        return actorflow.get_runtime_context().get_node_id(), mesh.add.broadcast(10).get()

    where, values = actorflow.get(from_a_task.remote(mesh))
    assert where in node_ids and values == [10, 11, 12, 13, 14, 15]
    mesh.kill()

    # A placement group: one member per bundle, on the bundle's node.
    group = placement_group([{"CPU": 0.5}] * 4, strategy="SPREAD")
    assert group.wait(60)
    bundles = placement_group_table(group)["bundles_to_node_id"]
    mesh = Member.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group)).mesh(4)
    assert [p[3] for p in mesh.place.broadcast().get()] == [bundles[i] for i in range(4)]
    assert mesh.add.sum(0).get() == 6
    with pytest.raises(ValueError, match="4 bundle"):
        Member.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group)).mesh(5)
    mesh.kill()

    # A node dies: its members (and its relay) fail their part, the other node's answer.
    mesh = Member.options(scheduling_strategy="SPREAD").mesh(4)
    places = mesh.place.broadcast().get()
    second = local_cluster.nodes[1]
    local_cluster.kill_node(second)
    values = mesh.add.broadcast(0).get(return_exceptions=True, timeout=60)
    for rank, value in enumerate(values):
        if places[rank][3] == second["node_id"]:
            assert isinstance(value, MeshMemberDiedError) and value.rank == rank
        else:
            assert value == rank
    assert any(p[3] == second["node_id"] for p in places)
