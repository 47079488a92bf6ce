"""actorflow.util.PoolActor: a pool that is itself an actor (issue 18)."""

from __future__ import annotations

import asyncio
import os

import pytest
from helpers import touch, wait_for_file
from test_cluster import run_driver

import actorflow
from actorflow.exceptions import ActorDiedError, TaskCancelledError
from actorflow.util import PoolActor, PoolFullError

pytestmark = pytest.mark.timeout(90)


@actorflow.remote
class Worker:
    def __init__(self, factor: int = 1) -> None:
        self.factor = factor
        self.log: list = []

    def mul(self, x: int) -> int:
        return x * self.factor

    def hold(self, gate: str) -> str:
        wait_for_file(gate)
        return "held"

    def tagged(self, tag: str) -> str:
        self.log.append(tag)
        return tag

    def get_log(self) -> list:
        return self.log

    def pid(self) -> int:
        return os.getpid()

    def boom(self) -> None:
        raise ValueError("boom")


@actorflow.remote
class Caller:
    """A second caller (its own process) that submits to the pool."""

    async def submit_many(self, pool, tag: str, n: int) -> list:
        return await asyncio.gather(*[pool.submit.remote("tagged", tag) for _ in range(n)])


def stats(pool) -> dict:
    return actorflow.get(pool.stats.remote(), timeout=30)


def test_submit_returns_results_errors_and_names_bad_methods(cluster):
    pool = PoolActor.remote(Worker, size=2, init_args=(3,))
    assert actorflow.get([pool.submit.remote("mul", i) for i in range(6)], timeout=30) == [
        0,
        3,
        6,
        9,
        12,
        15,
    ]
    with pytest.raises(ValueError, match="boom"):
        actorflow.get(pool.submit.remote("boom"), timeout=30)
    with pytest.raises(AttributeError, match="Worker has no method 'nope'"):
        actorflow.get(pool.submit.remote("nope"), timeout=30)
    with pytest.raises(ActorDiedError, match="size must be an int >= 1, got 0"):
        actorflow.get(PoolActor.remote(Worker, size=0).stats.remote(), timeout=30)
    s = stats(pool)
    assert s["size"] == 2 and len(s["members"]) == 2
    assert s["completed"] == 6 and s["failed"] == 1  # a bad name is refused before queueing
    assert sum(m["done"] for m in s["members"]) == 6
    actorflow.kill(pool)


def test_async_submit(cluster):
    async def main() -> list:
        pool = PoolActor.remote(Worker, size=2)
        return await asyncio.gather(*[pool.submit.remote("mul", i) for i in range(4)])

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_fair_queueing_round_robin_over_callers(cluster, tmp_path, poll_until):
    gate = str(tmp_path / "gate")
    pool = PoolActor.remote(Worker, size=1)
    held = pool.submit.remote("hold", gate)  # the only member is busy: the rest queue
    poll_until(lambda: stats(pool)["running"] == 1, timeout=30)
    a, b = Caller.remote(), Caller.remote()
    from_a = a.submit_many.remote(pool, "a", 4)
    poll_until(lambda: stats(pool)["queued"] == 4, timeout=30)
    from_b = b.submit_many.remote(pool, "b", 4)
    poll_until(lambda: stats(pool)["queued"] == 8, timeout=30)
    assert sorted(stats(pool)["queued_per_caller"].values()) == [4, 4]
    touch(gate)
    assert actorflow.get(held, timeout=30) == "held"
    assert actorflow.get([from_a, from_b], timeout=30) == [["a"] * 4, ["b"] * 4]
    # A queued all of its calls first, yet B's are interleaved with them.
    assert actorflow.get(pool.submit.remote("get_log"), timeout=30) == ["a", "b"] * 4
    actorflow.kill(pool)


def test_back_pressure_fails_fast_times_out_or_waits(cluster, tmp_path, poll_until):
    gate = str(tmp_path / "gate")
    pool = PoolActor.options(name="bounded").remote(Worker, size=1, max_queued=2)
    held = pool.submit.remote("hold", gate)
    poll_until(lambda: stats(pool)["running"] == 1, timeout=30)
    queued = [pool.submit.remote("mul", i) for i in (1, 2)]
    poll_until(lambda: stats(pool)["queued"] == 2, timeout=30)
    with pytest.raises(PoolFullError, match=r"pool 'bounded' is full: 2 calls queued.*is 2"):
        actorflow.get(pool.submit.remote("mul", 3, block=False), timeout=30)
    with pytest.raises(PoolFullError, match=r"no room in its queue \(max_queued=2\) within 0.2"):
        actorflow.get(pool.submit.remote("mul", 4, timeout=0.2), timeout=30)
    waiting = pool.submit.remote("mul", 5)  # blocks until there is room
    poll_until(lambda: stats(pool)["waiting_for_room"] == 1, timeout=30)
    assert not waiting.done()
    touch(gate)
    assert actorflow.get([held, *queued, waiting], timeout=30) == ["held", 1, 2, 5]
    actorflow.kill(pool)


def test_killed_member_with_queued_work_is_replaced_and_retried(cluster, tmp_path, poll_until):
    gate = str(tmp_path / "gate")
    pool = PoolActor.remote(Worker, size=1, max_task_retries=1)
    (member,) = actorflow.get(pool.members.remote(), timeout=30)
    first_pid = actorflow.get(member.pid.remote(), timeout=30)
    held = pool.submit.remote("hold", gate)  # running on the member when it dies
    poll_until(lambda: stats(pool)["running"] == 1, timeout=30)
    queued = [pool.submit.remote("mul", i) for i in range(3)]
    poll_until(lambda: stats(pool)["queued"] == 3, timeout=30)
    touch(gate)  # the retried call will pass at once
    actorflow.kill(member)
    assert actorflow.get([held, *queued], timeout=60) == ["held", 0, 1, 2]
    s = stats(pool)
    assert s["restarts"] == 1 and len(s["members"]) == 1
    new_pid = actorflow.get(pool.submit.remote("pid"), timeout=30)
    assert new_pid != first_pid
    actorflow.kill(pool)


def test_killed_member_without_retries_fails_its_call(cluster, tmp_path, poll_until):
    gate = str(tmp_path / "gate")
    pool = PoolActor.remote(Worker, size=1)
    (member,) = actorflow.get(pool.members.remote(), timeout=30)
    held = pool.submit.remote("hold", gate)
    poll_until(lambda: stats(pool)["running"] == 1, timeout=30)
    queued = pool.submit.remote("mul", 7)
    actorflow.kill(member)
    with pytest.raises(ActorDiedError, match=r"member 0 died running Worker.hold"):
        actorflow.get(held, timeout=60)
    assert actorflow.get(queued, timeout=60) == 7  # queued work runs on the replacement
    actorflow.kill(pool)


def test_resize_grows_and_shrinks_letting_running_work_finish(cluster, tmp_path, poll_until):
    gate = str(tmp_path / "gate")
    pool = PoolActor.remote(Worker, size=1)
    assert actorflow.get(pool.resize.remote(3), timeout=30) == 3
    assert len(stats(pool)["members"]) == 3
    held = [pool.submit.remote("hold", gate) for _ in range(3)]
    poll_until(lambda: stats(pool)["running"] == 3, timeout=30)
    assert actorflow.get(pool.resize.remote(1), timeout=30) == 1
    states = sorted(m["state"] for m in stats(pool)["members"])
    assert states == ["alive", "draining", "draining"]  # still running their calls
    touch(gate)
    assert actorflow.get(held, timeout=30) == ["held"] * 3  # none was cut short
    poll_until(lambda: len(stats(pool)["members"]) == 1, timeout=30)
    assert actorflow.get(pool.submit.remote("mul", 2), timeout=30) == 2
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        actorflow.get(pool.resize.remote(0), timeout=30)
    actorflow.kill(pool)


def test_two_drivers_share_one_named_detached_pool(local_cluster):
    local_cluster.add_node(num_cpus=2)
    actorflow.init(address=local_cluster.address, namespace="pools")
    pool = PoolActor.options(name="embed", lifetime="detached").remote(
        Worker, size=2, init_args=(10,)
    )
    assert actorflow.get(pool.submit.remote("mul", 1), timeout=60) == 10
    out = run_driver(
        local_cluster,
        """
        import asyncio
        pool = actorflow.get_actor("embed", namespace="pools")
        print("sync", actorflow.get(pool.submit.remote("mul", 4), timeout=60))
        async def main():
            print("async", await pool.submit.remote("mul", 5))
        asyncio.run(main())
        """,
    )
    assert "sync 40" in out and "async 50" in out
    assert actorflow.get(pool.stats.remote(), timeout=30)["completed"] == 3
    actorflow.kill(pool)


def test_fair_queue_unit():
    from actorflow.util.pool_actor import FairQueue

    q = FairQueue()
    for i in range(3):
        q.push("a", f"a{i}")
    q.push("b", "b0")
    q.push("c", "c0", front=True)
    assert q.counts() == {"a": 3, "b": 1, "c": 1}
    assert [q.pop() for _ in range(5)] == ["a0", "b0", "c0", "a1", "a2"]
    q.push("a", "x")
    assert q.remove("a", "x") and not q.remove("a", "x") and len(q) == 0


def test_a_cancelled_submit_leaves_the_queue_or_stops_its_member_call(
    cluster, tmp_path, poll_until
):
    gate = str(tmp_path / "gate")
    pool = PoolActor.remote(Worker, size=1)
    held = pool.submit.remote("hold", gate)
    poll_until(lambda: stats(pool)["running"] == 1, timeout=30)
    queued = pool.submit.remote("mul", 3)
    poll_until(lambda: stats(pool)["queued"] == 1, timeout=30)
    actorflow.cancel(queued)
    poll_until(lambda: stats(pool)["queued"] == 0, timeout=30)
    with pytest.raises(TaskCancelledError):
        actorflow.get(queued, timeout=30)
    actorflow.cancel(held)  # running on the member: its call is cancelled there too
    with pytest.raises(TaskCancelledError):
        actorflow.get(held, timeout=30)
    poll_until(lambda: stats(pool)["running"] == 0, timeout=30)  # without opening the gate
    assert actorflow.get(pool.submit.remote("mul", 2), timeout=30) == 2
    assert stats(pool)["completed"] == 1
    actorflow.kill(pool)
