"""Objects: put, get, wait, cancel, refs, and exact types through serialization."""

from __future__ import annotations

import asyncio
import collections
import decimal
import enum
import fractions
import gc
import os
import time

import numpy as np
import pytest
from helpers import gated, sleeper, touch, wait_for_file

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)


# -- helpers that run inside workers ------------------------------------------------------------


@actorflow.remote
def identity(x):
    return x


@actorflow.remote
def type_name(x):
    return type(x).__module__ + "." + type(x).__qualname__


@actorflow.remote
async def async_sleeper(started: str, seconds: float = 60.0):
    try:
        touch(started, str(os.getpid()))
        await asyncio.sleep(seconds)
    except BaseException as exc:
        touch(started + ".exc", type(exc).__name__)
        raise
    return "slept"


@actorflow.remote
def waits_for_child(started: str):
    return actorflow.get(sleeper.remote(started))


@actorflow.remote
def gated_child(gate: str, started: str, done: str):
    touch(started)
    wait_for_file(gate)
    touch(done)
    return "child done"


@actorflow.remote
def waits_for_gated_child(gate: str, started: str, done: str):
    return actorflow.get(gated_child.remote(gate, started, done))


@actorflow.remote
def gen_forever(started: str):
    touch(started)
    i = 0
    while True:
        yield i
        i += 1
        time.sleep(0.01)


@actorflow.remote
def put_in_worker(value):
    ref = actorflow.put(value)
    return [ref], os.getpid()


# -- put and get --------------------------------------------------------------------------------


def test_put_get_roundtrip(cluster):
    ref = actorflow.put({"a": [1, 2, 3]})
    assert isinstance(ref, actorflow.ObjectRef)
    assert actorflow.get(ref) == {"a": [1, 2, 3]}
    assert actorflow.get(ref) == {"a": [1, 2, 3]}  # repeatable


def test_get_returns_a_fresh_value_each_time(cluster):
    ref = actorflow.put([1, 2])
    first = actorflow.get(ref)
    first.append(3)
    assert actorflow.get(ref) == [1, 2]


def test_get_list_keeps_order(cluster):
    refs = [identity.remote(i) for i in range(10)] + [actorflow.put("x")]
    assert actorflow.get(refs, timeout=30) == list(range(10)) + ["x"]
    assert actorflow.get(tuple(refs[:2]), timeout=30) == [0, 1]
    assert actorflow.get([]) == []


def test_get_timeout(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    ref = gated.remote(gate, 1)
    with pytest.raises(exceptions.GetTimeoutError) as info:
        actorflow.get(ref, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(exceptions.GetTimeoutError):
        actorflow.get([actorflow.put(0), ref], timeout=0)
    touch(gate)
    assert actorflow.get(ref, timeout=30) == 1
    assert actorflow.get(ref, timeout=0) == 1  # ready: a zero timeout is fine


@pytest.mark.parametrize("bad", [-1, "1", [1]])
def test_get_rejects_a_bad_timeout(cluster, bad):
    with pytest.raises(ValueError):
        actorflow.get(actorflow.put(1), timeout=bad)


@pytest.mark.parametrize("bad", [1, "ref", None, [1], {"a": 1}])
def test_get_rejects_non_refs(cluster, bad):
    with pytest.raises(TypeError):
        actorflow.get(bad)


def test_put_of_a_ref_is_refused(cluster):
    with pytest.raises(TypeError):
        actorflow.put(actorflow.put(1))


def test_put_of_an_unpicklable_value(cluster):
    import threading

    with pytest.raises(exceptions.SerializationError) as info:
        actorflow.put(threading.Lock())
    assert isinstance(info.value, TypeError)
    assert "lock" in str(info.value).lower()


def test_refs_inside_values_roundtrip(cluster):
    inner = actorflow.put("inner")
    outer = actorflow.put({"ref": inner, "list": [inner]})
    value = actorflow.get(outer)
    assert value["ref"] == inner
    assert actorflow.get(value["ref"]) == "inner"
    # Through a task and back.
    back = actorflow.get(identity.remote([inner]), timeout=30)
    assert actorflow.get(back[0]) == "inner"


def test_ref_owned_by_a_worker_is_readable_by_the_driver(cluster):
    refs, pid = actorflow.get(put_in_worker.remote({"from": "worker"}), timeout=30)
    assert pid != os.getpid()
    assert actorflow.get(refs[0], timeout=30) == {"from": "worker"}


def test_ref_api(cluster):
    ref = actorflow.put(1)
    same = actorflow.ObjectRef(ref.id, ref.owner)
    assert ref == same and hash(ref) == hash(same)
    assert ref != actorflow.put(1)
    assert len(ref.hex()) == 2 * len(ref.id)
    assert ref.hex() in repr(ref)
    task_ref = identity.remote(1)
    assert task_ref.task_id() != ref.task_id()
    assert actorflow.get(task_ref, timeout=30) == 1


def test_ref_to_an_object_the_owner_does_not_have_is_lost(cluster):
    ref = actorflow.ObjectRef(os.urandom(20), actorflow.put(0).owner)
    with pytest.raises(exceptions.ObjectLostError):
        actorflow.get(ref, timeout=3)


def test_ref_pickled_out_of_band_keeps_its_object(cluster):
    # As in Ray: whoever unpickles it later must find the value, so the owner keeps it.
    import pickle

    from actorflow import cloudpickle

    for dumps in (pickle.dumps, cloudpickle.dumps):
        ref = actorflow.put("value")
        data = dumps(ref)
        del ref
        gc.collect()
        assert actorflow.get(pickle.loads(data), timeout=30) == "value"


def test_owner_died(cluster, poll_until, process_gone):
    import signal

    refs, pid = actorflow.get(put_in_worker.remote("owned by a worker"), timeout=30)
    os.kill(pid, signal.SIGKILL)
    poll_until(lambda: process_gone(pid), timeout=10)
    with pytest.raises(exceptions.OwnerDiedError) as info:
        actorflow.get(refs[0], timeout=20)
    assert isinstance(info.value, exceptions.ObjectLostError)


def test_dropped_local_ref_does_not_break_other_refs(cluster):
    refs = [actorflow.put(i) for i in range(100)]
    keep = refs[::10]
    del refs
    gc.collect()
    assert actorflow.get(keep) == list(range(0, 100, 10))


# -- exact types --------------------------------------------------------------------------------


class Text(str):
    pass


class Number(int):
    pass


class Color(enum.Enum):
    RED = 1


Point = collections.namedtuple("Point", "x y")

EXACT_VALUES = [
    0,
    -1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    2**200,
    True,
    False,
    None,
    1.5,
    float("inf"),
    "",
    "text",
    "üñí",
    b"",
    b"\x00bytes",
    bytearray(b"ba"),
    (1, 2),
    (),
    [1, (2, 3)],
    {"a": 1},
    {1: "int key", (1, 2): "tuple key"},
    {1, 2},
    frozenset({3}),
    Text("sub"),
    Number(7),
    Color.RED,
    Point(1, 2),
    decimal.Decimal("1.10"),
    fractions.Fraction(1, 3),
    1 + 2j,
    collections.OrderedDict(a=1),
    range(3),
    [[[]]],
    {"nested": {"t": (1, [2, {3}])}},
]


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


@pytest.mark.parametrize(
    "value", EXACT_VALUES, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(EXACT_VALUES)]
)
def test_values_keep_their_exact_type(cluster, value):
    assert _same(actorflow.get(actorflow.put(value)), value)
    assert _same(actorflow.get(identity.remote(value), timeout=30), value)


def test_argument_types_seen_by_the_task(cluster):
    assert actorflow.get(type_name.remote((1,)), timeout=30) == "builtins.tuple"
    assert actorflow.get(type_name.remote(True), timeout=30) == "builtins.bool"
    assert actorflow.get(type_name.remote(Text("x")), timeout=30).endswith(".Text")
    assert actorflow.get(type_name.remote(b"x"), timeout=30) == "builtins.bytes"


def test_large_values(cluster):
    blob = os.urandom(5 * 1024 * 1024)
    assert actorflow.get(identity.remote(blob), timeout=30) == blob
    assert actorflow.get(actorflow.put(blob)) == blob


def test_numpy_arrays(cluster):
    array = np.arange(300_000, dtype=np.float32).reshape(600, 500)
    for back in (
        actorflow.get(actorflow.put(array)),
        actorflow.get(identity.remote(array), timeout=30),
    ):
        assert isinstance(back, np.ndarray)
        assert back.dtype == np.float32 and back.shape == (600, 500)
        assert np.array_equal(back, array)
    scalar = actorflow.get(identity.remote(np.int16(7)), timeout=30)
    assert type(scalar) is np.int16 and scalar == 7


# -- wait ---------------------------------------------------------------------------------------


def test_wait_returns_ready_and_not_ready_in_input_order(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    refs = [gated.remote(gate, 0), actorflow.put(1), gated.remote(gate, 2), actorflow.put(3)]
    ready, not_ready = actorflow.wait(refs, num_returns=2, timeout=30)
    assert ready == [refs[1], refs[3]]
    assert not_ready == [refs[0], refs[2]]
    touch(gate)
    ready, not_ready = actorflow.wait(refs, num_returns=4, timeout=30)
    assert ready == refs and not_ready == []


def test_wait_num_returns_takes_the_first_ready_in_input_order(cluster):
    refs = [actorflow.put(i) for i in range(5)]
    ready, not_ready = actorflow.wait(refs, num_returns=2)
    assert ready == refs[:2] and not_ready == refs[2:]


def test_wait_timeout_returns_what_is_ready(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    pending = gated.remote(gate, 0)
    done = actorflow.put(1)
    ready, not_ready = actorflow.wait([pending, done], num_returns=2, timeout=0.2)
    assert ready == [done] and not_ready == [pending]
    ready, not_ready = actorflow.wait([pending], timeout=0)
    assert ready == [] and not_ready == [pending]
    ready, not_ready = actorflow.wait([pending], timeout=0.1, fetch_local=False)
    assert ready == [] and not_ready == [pending]
    touch(gate)
    ready, _ = actorflow.wait([pending], timeout=30)
    assert ready == [pending]


def test_wait_counts_failed_tasks_as_ready(cluster):
    failing = identity.options(num_returns=2).remote(1)
    ready, not_ready = actorflow.wait(failing, num_returns=2, timeout=30)
    assert ready == failing and not_ready == []


def test_wait_on_a_ref_owned_by_a_worker(cluster):
    refs, _ = actorflow.get(put_in_worker.remote("w"), timeout=30)
    ready, _ = actorflow.wait(refs, timeout=30)
    assert ready == refs


@pytest.mark.parametrize(
    "call",
    [
        lambda r: actorflow.wait(r[0]),
        lambda r: actorflow.wait([r[0], 5]),
        lambda r: actorflow.wait([r[0], r[0]]),
        lambda r: actorflow.wait(r, num_returns=0),
        lambda r: actorflow.wait(r, num_returns=3),
    ],
)
def test_wait_rejects_bad_arguments(cluster, call):
    refs = [actorflow.put(1), actorflow.put(2)]
    with pytest.raises((TypeError, ValueError)):
        call(refs)


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_a_queued_task(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    # Occupy every CPU, then queue one more task.
    blockers = [gated.remote(gate, i) for i in range(4)]
    queued = gated.remote(gate, "queued")
    actorflow.cancel(queued)
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(queued, timeout=10)
    touch(gate)
    assert actorflow.get(blockers, timeout=30) == [0, 1, 2, 3]
    with pytest.raises(exceptions.TaskCancelledError):  # stays cancelled
        actorflow.get(queued, timeout=10)


def test_cancel_a_task_waiting_for_its_arguments(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    waiting = identity.remote(gated.remote(gate, 1))
    actorflow.cancel(waiting)
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(waiting, timeout=10)
    touch(gate)


def test_cancel_a_running_sync_task_in_sleep(cluster, tmp_path, poll_until, process_gone):
    started = tmp_path / "started"
    ref = sleeper.remote(str(started))
    poll_until(started.exists, timeout=30)
    begin = time.monotonic()
    actorflow.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(ref, timeout=20)
    assert time.monotonic() - begin < 20
    # The task was interrupted inside time.sleep, and its worker lives on.
    poll_until(lambda: os.path.exists(f"{started}.exc"), timeout=10)
    pid = int(started.read_text())
    assert not process_gone(pid)
    # The worker is usable again.
    assert actorflow.get(identity.remote("after"), timeout=30) == "after"


def test_force_cancel_ends_the_worker(cluster, tmp_path, poll_until, process_gone):
    started = tmp_path / "started"
    ref = sleeper.remote(str(started))
    poll_until(started.exists, timeout=30)
    pid = int(started.read_text())
    actorflow.cancel(ref, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(ref, timeout=20)
    poll_until(lambda: process_gone(pid), timeout=10)
    assert actorflow.get(identity.remote("after"), timeout=30) == "after"


def test_cancel_a_running_async_task(cluster, tmp_path, poll_until):
    started = tmp_path / "started"
    ref = async_sleeper.remote(str(started))
    poll_until(started.exists, timeout=30)
    actorflow.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(ref, timeout=20)
    poll_until(lambda: os.path.exists(f"{started}.exc"), timeout=10)
    assert (tmp_path / "started.exc").read_text() == "CancelledError"


def test_cancel_is_recursive(cluster, tmp_path, poll_until):
    started = tmp_path / "child"
    ref = waits_for_child.remote(str(started))
    poll_until(started.exists, timeout=30)
    actorflow.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(ref, timeout=20)
    # The child the cancelled task was waiting for is cancelled too.
    poll_until(lambda: os.path.exists(f"{started}.exc"), timeout=20)


def test_cancel_not_recursive_leaves_the_children_running(cluster, tmp_path, poll_until):
    gate, started, done = (str(tmp_path / name) for name in ("gate", "started", "done"))
    ref = waits_for_gated_child.remote(gate, started, done)
    poll_until(lambda: os.path.exists(started), timeout=30)
    actorflow.cancel(ref, recursive=False)
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(ref, timeout=20)
    touch(gate)
    # The child was not cancelled: it runs to its end.
    poll_until(lambda: os.path.exists(done), timeout=20)


def test_cancel_a_finished_task_is_a_no_op(cluster):
    ref = identity.remote("done")
    assert actorflow.get(ref, timeout=30) == "done"
    actorflow.cancel(ref)
    assert actorflow.get(ref) == "done"


def test_cancel_a_generator(cluster, tmp_path, poll_until):
    started = tmp_path / "started"
    gen = gen_forever.remote(str(started))
    assert actorflow.get(next(gen), timeout=30) == 0
    actorflow.cancel(gen)
    # The stream ends: iteration stops, or the next ref carries the cancellation.
    with pytest.raises((StopIteration, exceptions.TaskCancelledError)):
        for _ in range(10_000):
            actorflow.get(next(gen), timeout=20)
    assert gen.is_finished()


def test_cancel_rejects_non_refs(cluster):
    with pytest.raises(TypeError):
        actorflow.cancel("not a ref")
