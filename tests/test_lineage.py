"""Lost objects (as Ray's object fault tolerance): an object whose every copy is gone is made
again by running the task that made it (recursively for its lost arguments), within the task's
max_retries; another node's copy is used first when there is one; put objects and actor results
are not made again and say why. Nodes are ended by pid (LocalCluster.kill_node)."""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np
import pytest

import actorflow
from actorflow import exceptions
from actorflow._private import ids
from actorflow._private.ownership.lineage import Lineage, TaskSpec
from actorflow._private.worker import context
from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(240)

N = 256 * 1024  # float64: 2 MiB, in shared memory (over the 100 KiB inline limit)


def runs(path: str) -> list[str]:
    """The node ids a logged task ran on, one line per run."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def _log_run(path: str) -> None:
    with open(path, "a") as f:
        f.write(actorflow.get_runtime_context().get_node_id() + "\n")


@actorflow.remote
def make(path: str, n: int) -> np.ndarray:
    _log_run(path)
    return np.arange(n, dtype=np.float64)


@actorflow.remote
def add_one(path: str, x: np.ndarray) -> np.ndarray:
    _log_run(path)
    return x + 1


@actorflow.remote
def last(x: np.ndarray) -> float:
    return float(x[-1])


@actorflow.remote
class Maker:
    def make(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.float64)


def prefer(node: dict, fn):
    """Run there while that node is alive, elsewhere once it is gone."""
    return fn.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["node_id"], soft=True)
    )


def on(node: dict, fn):
    return fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["node_id"]))


def start(local_cluster, extra: int = 1) -> list[dict]:
    nodes = [local_cluster.add_node(num_cpus=2) for _ in range(1 + extra)]
    actorflow.init(address=local_cluster.address)
    return nodes


def lineage_stats(core) -> dict:
    """The driver's lineage stats, read on its runtime loop (where lineage is kept)."""
    answer: concurrent.futures.Future = concurrent.futures.Future()
    core.runtime.call_soon(lambda: answer.set_result(core.ownership.lineage.stats()))
    return answer.result(timeout=30)


def made_there(ref) -> None:
    """Wait until the task behind ref has finished, without reading its value here."""
    ready, _ = actorflow.wait([ref], timeout=120)
    assert ready


def test_a_result_only_a_dead_node_held_is_made_again(local_cluster, tmp_path):
    head, other = start(local_cluster)
    log = str(tmp_path / "make")
    ref = prefer(other, make).remote(log, N)
    made_there(ref)
    assert runs(log) == [other["node_id"]]
    local_cluster.kill_node(other)
    value = actorflow.get(ref, timeout=180)
    assert value.shape == (N,) and value[-1] == N - 1
    assert runs(log) == [other["node_id"], head["node_id"]]  # run again, on the node left


def test_a_chain_is_made_again_from_its_start(local_cluster, tmp_path):
    head, other = start(local_cluster)
    log_a, log_b = str(tmp_path / "a"), str(tmp_path / "b")
    a = prefer(other, make).remote(log_a, N)
    b = prefer(other, add_one).remote(log_b, a)
    made_there(b)
    del a  # its value goes; the owner keeps the spec of the task that made it
    local_cluster.kill_node(other)
    value = actorflow.get(b, timeout=180)
    assert value[0] == 1 and value[-1] == N
    assert len(runs(log_a)) == 2 and len(runs(log_b)) == 2


def test_a_task_reading_a_lost_argument_gets_it_made_again(local_cluster, tmp_path):
    head, other = start(local_cluster)
    log = str(tmp_path / "make")
    ref = prefer(other, make).remote(log, N)
    made_there(ref)
    local_cluster.kill_node(other)
    # The worker's pull fails; it asks the task's caller (the owner), which runs make again.
    assert actorflow.get(on(head, last).remote(ref), timeout=180) == N - 1
    assert len(runs(log)) == 2


@actorflow.remote
class Reader:
    def read(self, refs: list) -> float:
        return float(actorflow.get(refs[0], timeout=180)[-1])


def test_a_borrower_reading_a_lost_object_asks_its_owner(local_cluster, tmp_path):
    head, other = start(local_cluster)
    log = str(tmp_path / "make")
    ref = prefer(other, make).remote(log, N)
    made_there(ref)
    reader = on(head, Reader).remote()
    local_cluster.kill_node(other)
    # The actor borrows the ref (inside a list): its pull fails, it asks the driver.
    assert actorflow.get(reader.read.remote([ref]), timeout=180) == N - 1
    assert len(runs(log)) == 2


@actorflow.remote
def echo(x: np.ndarray) -> np.ndarray:
    return x


def test_a_task_given_a_large_value_by_value_says_why_it_cannot_run_again(local_cluster):
    head, other = start(local_cluster)
    ref = prefer(other, echo).remote(np.arange(N, dtype=np.float64))  # by value, in the store
    made_there(ref)
    local_cluster.kill_node(other)
    with pytest.raises(exceptions.ObjectReconstructionFailedError) as lost:
        actorflow.get(ref, timeout=120)
    assert lost.value.reason == "DEPENDENCY" and "by value" in str(lost.value)


def test_max_retries_zero_is_not_made_again(local_cluster, tmp_path):
    head, other = start(local_cluster)
    log = str(tmp_path / "make")
    ref = prefer(other, make).options(max_retries=0).remote(log, N)
    made_there(ref)
    local_cluster.kill_node(other)
    with pytest.raises(exceptions.ObjectReconstructionFailedMaxAttemptsExceededError) as lost:
        actorflow.get(ref, timeout=120)
    assert isinstance(lost.value, exceptions.ObjectLostError)
    assert lost.value.reason == "RETRIES_DISABLED"
    assert ref.hex() in str(lost.value) and "max_retries=0" in str(lost.value)
    assert other["node_id"] in str(lost.value)  # where it was lost
    assert len(runs(log)) == 1
    with pytest.raises(exceptions.ObjectReconstructionFailedMaxAttemptsExceededError):
        actorflow.get(ref, timeout=30)  # the error is the object's value now


def test_retries_spent_are_counted(local_cluster, tmp_path):
    # Only the two nodes with "x" can run it: made on the first, made again on the second
    # (its one retry), then lost again with no retries left.
    local_cluster.add_node(num_cpus=2)  # the head, where the driver is
    first = local_cluster.add_node(num_cpus=2, resources={"x": 1})
    second = local_cluster.add_node(num_cpus=2, resources={"x": 1})
    actorflow.init(address=local_cluster.address)
    log = str(tmp_path / "make")
    ref = prefer(first, make).options(max_retries=1, resources={"x": 1}).remote(log, N)
    made_there(ref)
    local_cluster.kill_node(first)
    # Read on the second node, so that no copy is made elsewhere.
    assert actorflow.get(on(second, last).remote(ref), timeout=180) == N - 1
    assert runs(log) == [first["node_id"], second["node_id"]]
    local_cluster.kill_node(second)
    with pytest.raises(exceptions.ObjectReconstructionFailedMaxAttemptsExceededError) as lost:
        actorflow.get(ref, timeout=120)
    assert lost.value.reason == "MAX_ATTEMPTS_EXCEEDED" and "max_retries=1" in str(lost.value)
    assert len(runs(log)) == 2


def test_a_copy_on_another_node_is_used_before_running_again(local_cluster, tmp_path):
    head, other, third = start(local_cluster, extra=2)
    log = str(tmp_path / "make")
    ref = prefer(other, make).remote(log, N)
    assert actorflow.get(on(third, last).remote(ref), timeout=120) == N - 1  # a copy there
    local_cluster.kill_node(other)
    value = actorflow.get(ref, timeout=120)
    assert value[-1] == N - 1
    assert runs(log) == [other["node_id"]]  # not run again: the third node's copy was pulled


def test_an_actor_result_is_not_made_again(local_cluster):
    head, other = start(local_cluster)
    maker = on(other, Maker).remote()
    ref = maker.make.remote(N)
    made_there(ref)
    local_cluster.kill_node(other)
    with pytest.raises(exceptions.ObjectReconstructionFailedError) as lost:
        actorflow.get(ref, timeout=120)
    assert isinstance(lost.value, exceptions.ObjectLostError)
    assert lost.value.reason == "ACTOR_TASK" and "actor method" in str(lost.value)


def test_a_lost_put_says_it_was_a_put(local_cluster):
    head, other = start(local_cluster)
    ref = actorflow.put(np.arange(N, dtype=np.float64))
    core = context.core_or_none()
    assert core is not None
    wire = core.objects.get_wire(ref.id)
    assert wire is not None and wire[1] == head["node_id"]
    # The driver's own node dies (the GCS, a process of its own, lives on), and its shared
    # memory with it.
    local_cluster.kill_node(head)
    with pytest.raises(exceptions.ObjectReconstructionFailedError) as lost:
        actorflow.get(ref, timeout=120)
    assert isinstance(lost.value, exceptions.ObjectLostError)
    assert lost.value.reason == "PUT" and "put()" in str(lost.value)


def test_evicted_lineage_says_so(local_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("ACTORFLOW_MAX_LINEAGE_BYTES", "1")  # every spec evicted at once
    head, other = start(local_cluster)
    ref = prefer(other, make).remote(str(tmp_path / "make"), N)
    made_there(ref)
    local_cluster.kill_node(other)
    with pytest.raises(exceptions.ObjectReconstructionFailedLineageEvictedError) as lost:
        actorflow.get(ref, timeout=120)
    assert "max_lineage_bytes" in str(lost.value)


def test_lineage_off(local_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("ACTORFLOW_LINEAGE_PINNING_ENABLED", "0")
    head, other = start(local_cluster)
    ref = prefer(other, make).remote(str(tmp_path / "make"), N)
    made_there(ref)
    local_cluster.kill_node(other)
    with pytest.raises(exceptions.ObjectReconstructionFailedError) as lost:
        actorflow.get(ref, timeout=120)
    assert lost.value.reason == "LINEAGE_DISABLED"


# -- the owner's lineage, as a plain state object ---------------------------------------------


class _Task:
    def __init__(self, num_returns: int = 1, retries: int = 3, args: bytes = b"x") -> None:
        self.task_id = ids.new_task_id()
        self.num_returns = num_returns
        self.retries_left = retries
        self.fn_name = "f"
        self.args_wire = [1, args]


def _spec(task: _Task, *args: bytes) -> TaskSpec:
    return TaskSpec(task, [[i, a, "me"] for i, a in enumerate(args)], task.retries_left)


def test_lineage_goes_with_the_last_result():
    lineage = Lineage()
    task = _Task(num_returns=2)
    lineage.record(_spec(task))
    first, second = (ids.object_id(task.task_id, i) for i in (1, 2))
    lineage.note_dropped(first)
    assert lineage.spec_of(first) is not None
    lineage.note_dropped(second)
    assert lineage.spec_of(first) is None and lineage.bytes == 0


def test_a_spec_needed_by_another_stays_until_that_one_goes():
    lineage = Lineage()
    a, b = _Task(), _Task()
    a_out, b_out = ids.object_id(a.task_id, 1), ids.object_id(b.task_id, 1)
    lineage.record(_spec(a))
    lineage.record(_spec(b, a_out))
    lineage.note_dropped(a_out)  # the ref to a's result went; b's spec needs a's
    assert lineage.spec_of(a_out) is not None and lineage.why_not(a_out, owned=True) is None
    lineage.note_dropped(b_out)
    assert lineage.stats() == {"specs": 0, "bytes": 0, "evicted": 0}


def test_lineage_is_bounded_in_bytes():
    lineage = Lineage(max_bytes=3000)
    tasks = [_Task(args=b"x" * 1000) for _ in range(4)]
    for task in tasks:
        lineage.record(_spec(task))
    assert lineage.bytes <= 3000
    oldest = ids.object_id(tasks[0].task_id, 1)
    why = lineage.why_not(oldest, owned=True)
    assert why is not None and why[0] == "LINEAGE_EVICTED"
    assert lineage.why_not(ids.object_id(tasks[-1].task_id, 1), owned=True) is None
    evicted = lineage.stats()["evicted"]
    lineage.note_dropped(oldest)
    assert lineage.stats()["evicted"] == evicted - 1  # forgotten with its last result


def test_why_not_names_the_reason():
    lineage = Lineage()
    task = _Task(retries=0)
    lineage.record(_spec(task))
    out = ids.object_id(task.task_id, 1)
    assert lineage.why_not(out, owned=True)[0] == "RETRIES_DISABLED"  # type: ignore[index]
    put_id = ids.object_id(ids.new_task_id(), 0)
    lineage.mark(put_id, "PUT")
    assert lineage.why_not(put_id, owned=True)[0] == "PUT"  # type: ignore[index]
    assert lineage.why_not(out, owned=False)[0] == "BORROWED"  # type: ignore[index]


def test_reconstruction_errors_are_object_lost_errors_and_pickle():
    import pickle

    for cls in (
        exceptions.ObjectReconstructionFailedError,
        exceptions.ObjectReconstructionFailedMaxAttemptsExceededError,
        exceptions.ObjectReconstructionFailedLineageEvictedError,
    ):
        err = cls("object 00 is lost", None)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and isinstance(back, exceptions.ObjectLostError)
        assert back.reason == err.reason and str(back) == "object 00 is lost"


def test_system_config_turns_lineage_off(make_cluster):
    make_cluster(num_cpus=1, _system_config={"lineage_pinning_enabled": False})
    core = context.core_or_none()
    assert core is not None and not core.ownership.lineage.enabled
    ref = last.remote(np.arange(4, dtype=np.float64))
    assert actorflow.get(ref, timeout=60) == 3.0
    assert lineage_stats(core)["specs"] == 0


def test_system_config_of_the_wrong_type_is_refused(no_cluster):
    with pytest.raises(ValueError, match="max_lineage_bytes"):
        actorflow.init(num_cpus=1, _system_config={"max_lineage_bytes": "big"})
    assert not actorflow.is_initialized()


def test_lineage_is_kept_while_results_live_and_freed_after(make_cluster, poll_until):
    make_cluster(num_cpus=1)
    core = context.core_or_none()
    assert core is not None
    refs = [last.remote(np.arange(4, dtype=np.float64)) for _ in range(5)]
    assert actorflow.get(refs, timeout=60) == [3.0] * 5
    assert lineage_stats(core)["specs"] == 5
    del refs

    def freed() -> bool:
        return lineage_stats(core)["specs"] == 0

    poll_until(freed, timeout=30, message="lineage kept after its results went")


def test_spec_size_counts_the_arguments_wire_of_every_kind():
    from actorflow._private import serialization

    lineage = Lineage()
    pickled, shared = _Task(), _Task()
    pickled.args_wire = [serialization.PICKLED, b"p" * 100, [b"b" * 1000]]
    shared.args_wire = [serialization.SHARED, "node", "segment", b"o" * 20, 10, []]
    lineage.record(_spec(pickled))
    lineage.record(_spec(shared))
    assert lineage.specs[pickled.task_id].size >= 1100
    assert lineage.specs[shared.task_id].size < 1100
