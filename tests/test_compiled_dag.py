"""Compiled graphs (dag.experimental_compile()) through the public API."""

from __future__ import annotations

import asyncio
import os

import pytest
from conftest import descendants
from helpers import Signal

import actorflow
from actorflow import exceptions
from actorflow.dag import CompiledDAGRef, InputNode, MultiOutputNode

pytestmark = pytest.mark.timeout(60)


@actorflow.remote
class Stage:
    def __init__(self, add: int = 0) -> None:
        self.add = add
        self.calls = 0

    def step(self, x):
        self.calls += 1
        if x == "boom":
            raise ValueError("boom in step")
        return x if isinstance(x, (str, bytes)) else x + self.add

    def combine(self, *parts, scale=1):
        return sum(parts) * scale

    def count(self):
        return self.calls

    def gated(self, signal, x):
        actorflow.get(signal.wait.remote())
        return x


@actorflow.remote
class AsyncStage:
    async def step(self, x):
        await asyncio.sleep(0)
        return x * 2


def leftovers() -> list[str]:
    """Channels' memory still held (an fd or a mapping) by this process or the processes below
    it (the actors' workers): channels are memfds, so once none holds them they are gone, and
    nothing of theirs is ever in /dev/shm."""
    found = []
    for pid in ["self", *descendants()]:
        try:
            targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            with open(f"/proc/{pid}/maps") as f:
                targets += [line.split(maxsplit=5)[-1] for line in f]
        except OSError:  # it ended meanwhile
            continue
        found += [t.strip() for t in targets if t.startswith("/memfd:actorflow:actorflow-cgraph-")]
    return found


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_linear_pipeline_and_teardown_leaves_nothing(cluster, live_descendants):
    stages = [Stage.remote(i) for i in (1, 10, 100)]
    actorflow.get([s.__ray_ready__.remote() for s in stages])
    processes, fds = live_descendants(), open_fds()
    with InputNode() as inp:
        node = inp
        for stage in stages:
            node = stage.step.bind(node)
    compiled = node.experimental_compile()
    assert leftovers()
    ref = compiled.execute(1)
    assert isinstance(ref, CompiledDAGRef)
    assert actorflow.get(ref) == 112
    assert [compiled.execute(i).get() for i in range(5)] == [111 + i for i in range(5)]
    compiled.teardown()
    compiled.teardown()  # idempotent
    assert leftovers() == []
    assert open_fds() == fds
    assert live_descendants() == processes  # no process was started for the graph
    # The actors live on and take ordinary calls again.
    assert actorflow.get([s.count.remote() for s in stages]) == [6, 6, 6]
    with pytest.raises(exceptions.ChannelError, match="torn down"):
        compiled.execute(1)


def test_fan_out_fan_in_multi_input_and_kwargs(cluster):
    workers = [Stage.remote(i) for i in range(3)]
    sink = Stage.remote()
    with InputNode() as inp:
        parts = [w.step.bind(inp[0]) for w in workers]
        dag = MultiOutputNode(
            [sink.combine.bind(*parts, scale=inp.scale), workers[0].step.bind(inp[0])]
        )
    compiled = dag.experimental_compile()
    try:
        refs = compiled.execute(1, scale=2)
        assert actorflow.get(refs) == [(1 + 2 + 3) * 2, 1]
        refs = compiled.execute(5, scale=1)
        assert [r.get() for r in refs] == [18, 5]
    finally:
        compiled.teardown()


def test_a_node_that_raises_fails_that_execution_only(cluster):
    a, b = Stage.remote(), Stage.remote(1)
    with InputNode() as inp:
        dag = b.step.bind(a.step.bind(inp))
    compiled = dag.experimental_compile()
    try:
        assert compiled.execute(1).get() == 2
        with pytest.raises(ValueError, match="boom in step"):
            actorflow.get(compiled.execute("boom"))
        with pytest.raises(exceptions.TaskError):
            compiled.execute("boom").get()
        assert compiled.execute(2).get() == 3
    finally:
        compiled.teardown()
    # b was not called for the failed executions.
    assert actorflow.get(b.count.remote()) == 2


def test_killed_actor_fails_the_graph_with_actor_died(cluster):
    actors = [Stage.remote() for _ in range(3)]
    with InputNode() as inp:
        dag = MultiOutputNode([a.step.bind(inp) for a in actors])
    compiled = dag.experimental_compile()
    assert actorflow.get(compiled.execute(1)) == [1, 1, 1]
    actorflow.kill(actors[0])
    with pytest.raises(exceptions.ActorDiedError, match="died"):
        actorflow.get(compiled.execute(2), timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        compiled.execute(3)
    # The others' loops were stopped: they answer ordinary calls.
    assert actorflow.get([a.count.remote() for a in actors[1:]], timeout=30) == [2, 2]
    compiled.teardown()
    assert leftovers() == []


def test_async_actor_and_execute_async(cluster):
    actor = AsyncStage.remote()
    with InputNode() as inp:
        dag = actor.step.bind(inp)
    compiled = dag.experimental_compile(enable_asyncio=True)

    async def run() -> list:
        futures = [await compiled.execute_async(i) for i in range(3)]
        return [await f for f in futures]

    try:
        assert asyncio.run(run()) == [0, 2, 4]
        assert compiled.execute(5).get() == 10
    finally:
        compiled.teardown()
    assert leftovers() == []


def test_max_inflight_pipelines_and_refuses_more(cluster):
    a, b = Stage.remote(1), Stage.remote(1)
    with InputNode() as inp:
        dag = b.step.bind(a.step.bind(inp))
    compiled = dag.experimental_compile(_max_inflight_executions=4)
    try:
        refs = [compiled.execute(i) for i in range(4)]
        with pytest.raises(exceptions.CgraphCapacityExceededError, match="in-flight"):
            compiled.execute(99)
        assert actorflow.get(refs[3]) == 5  # read out of order: earlier ones are kept
        assert [r.get() for r in refs[:3]] == [2, 3, 4]
        with pytest.raises(ValueError, match="once"):
            refs[0].get()
        dropped = compiled.execute(100)
        del dropped  # never got: its result is not kept
        assert compiled.execute(8).get() == 10
        assert compiled.execute(7).get() == 9
    finally:
        compiled.teardown()
    with pytest.raises(ValueError, match="already called"):
        dag.experimental_compile()  # as Ray: one compiled graph per DAG object
    with InputNode() as inp:
        fresh = a.step.bind(inp)
    with pytest.raises(ValueError, match="_max_inflight_executions"):
        fresh.experimental_compile(_max_inflight_executions=0)


def test_get_timeout_then_the_result_still_arrives(cluster):
    signal = Signal.remote()
    actor = Stage.remote()
    with InputNode() as inp:
        dag = actor.gated.bind(signal, inp)
    compiled = dag.experimental_compile()
    try:
        ref = compiled.execute("late")
        with pytest.raises(exceptions.ChannelTimeoutError):
            actorflow.get(ref, timeout=0.2)
        with pytest.raises(TimeoutError):
            ref.get(timeout=0)
        actorflow.get(signal.send.remote())
        assert ref.get(timeout=30) == "late"
    finally:
        compiled.teardown()


def test_values_larger_than_the_buffer(cluster):
    a = Stage.remote()
    with InputNode() as inp:
        dag = a.step.bind(inp)
    compiled = dag.experimental_compile(_buffer_size_bytes=1024)
    try:
        big = b"x" * 100_000
        assert compiled.execute(big).get() == big
        assert compiled.execute(b"small").get() == b"small"
    finally:
        compiled.teardown()
    assert leftovers() == []


def test_two_methods_of_one_actor_and_what_cannot_compile(cluster):
    a = Stage.remote(1)
    with InputNode() as inp:
        dag = a.step.bind(a.step.bind(inp))
    compiled = dag.experimental_compile()
    try:
        assert compiled.execute(1).get() == 3
    finally:
        compiled.teardown()

    @actorflow.remote
    def task(x):
        return x

    with InputNode() as inp:
        with pytest.raises(ValueError, match="live actors"):
            task.bind(inp).experimental_compile()
        with pytest.raises(ValueError, match="live actors"):
            Stage.bind().step.bind(inp).experimental_compile()
        with pytest.raises(ValueError, match="containers"):
            a.combine.bind([inp]).experimental_compile()
    with InputNode() as inp:
        inp[0], inp[2]
        dag = a.combine.bind(inp[1], inp[2])
    with pytest.raises(ValueError, match="0 is unused"):
        dag.experimental_compile()
    assert leftovers() == []
