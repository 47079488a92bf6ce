"""Unit tests of the plain state objects and helpers: no cluster, no sockets, no processes.

Config, serialization, resources, the object table, ids, option checking, exceptions, the
control-plane error encoding and the output forwarding stream.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from actorflow import exceptions
from actorflow._private import ids, serialization
from actorflow._private.config import Config
from actorflow._private.node import resources
from actorflow._private.ownership.table import MISSING, ObjectTable
from actorflow._private.runtime import error_from_wire, error_to_wire
from actorflow._private.worker import options, output
from actorflow.exceptions import RemoteError
from actorflow.object_ref import ObjectRef

pytestmark = pytest.mark.timeout(30)


# -- Config -------------------------------------------------------------------------------------


def test_config_defaults():
    config = Config.from_env({})
    assert config == Config()
    assert config.default_max_retries == 3
    assert config.inline_object_max_bytes == 100 * 1024
    assert config.session_root == "/tmp/actorflow-sessions"
    assert config.log_to_driver is True


def test_config_environment_overrides():
    config = Config.from_env(
        {
            "ACTORFLOW_DEFAULT_MAX_RETRIES": "7",
            "ACTORFLOW_LEASE_IDLE_SECONDS": "0.25",
            "ACTORFLOW_SESSION_ROOT": "/somewhere",
            "ACTORFLOW_LOG_TO_DRIVER": "0",
            "UNRELATED": "x",
            "ACTORFLOW_NOT_A_FIELD": "ignored",
        }
    )
    assert config.default_max_retries == 7 and type(config.default_max_retries) is int
    assert config.lease_idle_seconds == 0.25
    assert config.session_root == "/somewhere"
    assert config.log_to_driver is False


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("", False),
    ],
)
def test_config_booleans(raw, expected):
    assert Config.from_env({"ACTORFLOW_LOG_TO_DRIVER": raw}).log_to_driver is expected


def test_config_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="ACTORFLOW_MAX_FRAME_SIZE"):
        Config.from_env({"ACTORFLOW_MAX_FRAME_SIZE": "big"})


def test_config_reads_os_environ(monkeypatch):
    monkeypatch.setenv("ACTORFLOW_PIPELINE_DEPTH", "3")
    assert Config.from_env().pipeline_depth == 3


def test_tuning_constants_are_config_fields_with_environment_overrides():
    config = Config()
    assert (config.transfer_chunk_bytes, config.transfer_window) == (8 << 20, 4)
    assert (config.transfer_seal_wait_seconds, config.transfer_chunk_timeout_seconds) == (10, 60)
    assert config.transfer_stream_min_bytes == 1 << 20
    assert (config.store_pool_idle_seconds, config.store_readers_timeout) == (10.0, 5.0)
    assert (config.actor_history, config.inspection_request_timeout) == (64, 10.0)
    assert (config.in_flight_seconds, config.actor_fate_timeout) == (60.0, 10.0)
    assert (config.handle_grace_seconds, config.mapping_sweep_seconds) == (1.0, 1.0)
    assert config.write_mappings_kept == 4
    changed = Config.from_env({"ACTORFLOW_TRANSFER_WINDOW": "2", "ACTORFLOW_ACTOR_HISTORY": "8"})
    assert (changed.transfer_window, changed.actor_history) == (2, 8)


def test_config_from_dict_round_trips_and_names_a_bad_field():
    config = Config(pipeline_depth=3, use_forkserver=False)
    assert Config.from_dict(dataclasses.asdict(config)) == config
    assert Config.from_dict({"lease_idle_seconds": 1}).lease_idle_seconds == 1  # int for float
    with pytest.raises(ValueError, match="Config.use_forkserver should be bool, got int"):
        Config.from_dict({"use_forkserver": 1})
    with pytest.raises(ValueError, match="Config.pipeline_depth should be int, got bool"):
        Config.from_dict({"pipeline_depth": True})
    with pytest.raises(ValueError, match="unknown Config field"):
        Config.from_dict({"nope": 1})


def test_config_is_frozen():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.default_max_retries = 1  # type: ignore[misc]
    changed = config.replace(default_max_retries=1)
    assert changed.default_max_retries == 1 and config.default_max_retries == 3


# -- serialization ------------------------------------------------------------------------------


class Text(str):
    pass


@pytest.mark.parametrize(
    "value, plain",
    [
        (1, True),
        (True, True),
        (None, True),
        (1.5, True),
        ("s", True),
        (b"b", True),
        (2**64 - 1, True),
        (2**64, False),
        (-(2**63), True),
        (-(2**63) - 1, False),
        (Text("s"), False),
        ((1,), False),
        ([1], False),
        (bytearray(b"x"), False),
    ],
)
def test_is_plain(value, plain):
    assert serialization.is_plain(value) is plain


@pytest.mark.parametrize(
    "value",
    [
        1,
        True,
        None,
        "s",
        b"b",
        2**64,
        (1, (2,)),
        [1, 2],
        {"k": (1,)},
        Text("t"),
        {1, 2},
        bytearray(b"ba"),
        1.25,
        -0.0,
    ],
)
def test_serialize_roundtrip_keeps_type(value):
    wire = serialization.serialize(value)
    assert not serialization.is_error(wire)
    back = serialization.deserialize(wire)
    assert type(back) is type(value) and back == value
    assert serialization.size_of(wire) > 0


def test_serialize_error():
    wire = serialization.serialize_error(KeyError("k"))
    assert serialization.is_error(wire)
    err = serialization.deserialize(wire)
    assert type(err) is KeyError and err.args == ("k",)


def test_serialize_error_that_cannot_be_pickled():
    import threading

    class Bad(Exception):
        pass

    exc = Bad("bad one")
    exc.lock = threading.Lock()  # type: ignore[attr-defined]
    wire = serialization.serialize_error(exc)
    err = serialization.deserialize(wire)
    assert isinstance(err, exceptions.ActorflowError)
    assert "bad one" in str(err)


def test_serialize_collecting_refs():
    a = ObjectRef(ids.object_id(ids.new_task_id(), 1), "tcp://127.0.0.1:1")
    b = ObjectRef(ids.object_id(ids.new_task_id(), 1), "tcp://127.0.0.1:2")
    wire, found = serialization.serialize_collecting_refs({"x": [a, (b,)], "y": 1})
    assert {r.id for r in found} == {a.id, b.id}
    back = serialization.deserialize(wire)
    assert back["x"][0] == a and back["x"][1][0].owner == "tcp://127.0.0.1:2"
    assert serialization.serialize_collecting_refs(5) == ([serialization.PLAIN, 5], [])
    # Outside a collection, pickling a ref records nothing.
    assert pickle.loads(pickle.dumps(a)) == a


def test_deserialize_rejects_unknown_kinds():
    with pytest.raises(ValueError):
        serialization.deserialize([99, b""])


def test_large_buffers_travel_out_of_band():
    np = pytest.importorskip("numpy")
    array = np.arange(100_000, dtype=np.int64)
    wire = serialization.serialize(array)
    assert wire[0] == serialization.PICKLED and wire[2], "expected out-of-band buffers"
    assert len(wire[1]) < array.nbytes
    assert np.array_equal(serialization.deserialize(wire), array)


# -- resources ----------------------------------------------------------------------------------


def test_normalize():
    assert resources.normalize({"CPU": 1, "GPU": 0, "x": 0.5}) == {"CPU": 1.0, "x": 0.5}
    assert resources.normalize(None) == {}
    with pytest.raises(ValueError):
        resources.normalize({"CPU": -1})
    with pytest.raises(TypeError):
        resources.normalize({"CPU": True})
    with pytest.raises(TypeError):
        resources.normalize({"CPU": "1"})
    with pytest.raises(ValueError):
        resources.normalize({"": 1})


def test_node_resources_accounting():
    node = resources.NodeResources({"CPU": 2, "GPU": 1, "widget": 3})
    assert node.feasible({"CPU": 2, "widget": 3})
    assert not node.feasible({"CPU": 3})
    assert not node.feasible({"gizmo": 1})
    node.acquire({"CPU": 2, "widget": 1})
    assert not node.fits({"CPU": 1})
    assert node.fits({"GPU": 1, "widget": 2})
    assert node.used() == {"CPU": 2.0, "GPU": 0.0, "widget": 1.0}
    node.release({"CPU": 2, "widget": 1})
    assert node.available == node.total
    node.release({"CPU": 5})  # never above the total
    assert node.available["CPU"] == 2.0


def test_fractional_resources_add_up():
    node = resources.NodeResources({"CPU": 1})
    for _ in range(10):
        assert node.fits({"CPU": 0.1})
        node.acquire({"CPU": 0.1})
    assert not node.fits({"CPU": 0.1})


def test_describe():
    assert resources.describe({}) == "{}"
    assert resources.describe({"GPU": 1, "CPU": 0.5}) == "{CPU: 0.5, GPU: 1}"


# -- options ------------------------------------------------------------------------------------


def test_resource_request():
    assert options.resource_request({}, 1.0) == {"CPU": 1.0}
    assert options.resource_request({"num_cpus": 0}, 1.0) == {}
    assert options.resource_request({"num_cpus": 2, "num_gpus": 1, "resources": {"w": 1}}, 1.0) == {
        "CPU": 2.0,
        "GPU": 1.0,
        "w": 1.0,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"nope": 1},
        {"num_cpus": -1},
        {"num_cpus": "1"},
        {"num_gpus": True},
        {"num_returns": -1},
        {"num_returns": "many"},
        {"max_retries": -2},
        {"resources": {"GPU": 1}},
        {"runtime_env": {"pypi": ["x"]}},  # an unknown field (Ray only warns)
        {"scheduling_strategy": "NODE_AFFINITY"},
    ],
)
def test_bad_task_options(bad):
    with pytest.raises((ValueError, TypeError)):
        options.check(bad, options.TASK_OPTIONS, "a test function")


def test_good_task_options():
    good = {
        "num_cpus": 0.5,
        "num_gpus": 1,
        "resources": {"w": 2},
        "num_returns": "streaming",
        "max_retries": -1,
        "retry_exceptions": [ValueError],
        "scheduling_strategy": "SPREAD",
    }
    assert options.check(good, options.TASK_OPTIONS, "a test function") == good


# -- the object table ---------------------------------------------------------------------------


def _oid() -> bytes:
    return ids.object_id(ids.new_task_id(), 1)


def test_object_table_pending_then_value():
    table = ObjectTable()
    oid = _oid()
    assert table.wait_or_get(oid, lambda w: None) is MISSING
    table.add_pending(oid)
    table.add_ref(oid, owned=True)
    got: list = []
    assert table.wait_or_get(oid, got.append) is None
    callbacks = table.put(oid, [serialization.PLAIN, 1])
    for cb in callbacks:
        cb([serialization.PLAIN, 1])
    assert got == [[serialization.PLAIN, 1]]
    assert table.get_wire(oid) == [serialization.PLAIN, 1]
    assert table.wait_or_get(oid, got.append) == [serialization.PLAIN, 1]
    # First value wins.
    assert table.put(oid, [serialization.PLAIN, 2]) == []
    assert table.get_wire(oid) == [serialization.PLAIN, 1]


def test_object_table_removed_callback_is_not_called():
    table = ObjectTable()
    oid = _oid()
    table.add_pending(oid)
    table.add_ref(oid, owned=True)
    got: list = []
    table.wait_or_get(oid, got.append)
    table.remove_callback(oid, got.append)
    assert table.put(oid, [serialization.PLAIN, 1]) == []


def test_object_table_drops_unreferenced_values():
    table = ObjectTable()
    oid = _oid()
    table.put(oid, [serialization.PLAIN, 1])
    table.add_ref(oid, owned=True)
    table.add_ref(oid, owned=True)
    table.release_ref(oid)
    assert oid in table
    table.release_ref(oid)
    assert oid not in table
    table.release_ref(oid)  # harmless


def test_object_table_keeps_borrowed_and_pinned_values():
    table = ObjectTable()
    dropped: list = []
    table.on_drop = lambda oid, entry: dropped.append(oid)
    borrowed, pinned = _oid(), _oid()
    for oid in (borrowed, pinned):
        table.put(oid, [serialization.PLAIN, 1])
        table.add_ref(oid, owned=True)
    assert table.add_borrower(borrowed, "tcp://127.0.0.1:1")
    table.pin(pinned)
    table.release_ref(borrowed)
    table.release_ref(pinned)
    assert borrowed in table and pinned in table and not dropped
    table.unpin(pinned)
    table.remove_borrower(borrowed, "tcp://127.0.0.1:1")
    assert pinned not in table and borrowed not in table
    assert dropped == [pinned, borrowed]


def test_object_table_first_ref_to_a_borrowed_object_says_so():
    table = ObjectTable()
    oid = _oid()
    assert table.add_ref(oid, owned=False, owner="tcp://127.0.0.1:2") is True
    assert table.add_ref(oid, owned=False, owner="tcp://127.0.0.1:2") is False
    table.release_ref(oid)
    table.release_ref(oid)
    assert oid not in table


def test_object_table_release_from_a_destructor_inside_the_lock_does_not_deadlock():
    table = ObjectTable()
    first, second = _oid(), _oid()
    for oid in (first, second):
        table.put(oid, [serialization.PLAIN, 1])
        table.add_ref(oid, owned=True)
    # What a garbage collection running ObjectRef.__del__ mid-operation amounts to:
    # a release while this very thread holds the table's lock.
    with table:
        table.release_ref(first)
        assert first in table  # queued: applied when the lock is let go
    assert first not in table
    table.release_ref(second)
    assert second not in table


def test_object_table_keeps_a_pending_owned_entry():
    table = ObjectTable()
    oid = _oid()
    table.add_pending(oid)
    table.add_ref(oid, owned=True)
    table.release_ref(oid)
    assert oid in table  # its task may still answer; the entry goes when it does
    table.put(oid, [serialization.PLAIN, 1])
    assert oid not in table


# -- ids ----------------------------------------------------------------------------------------


def test_ids():
    task = ids.new_task_id()
    assert len(task) == ids.TASK_ID_BYTES
    obj = ids.object_id(task, 3)
    assert len(obj) == ids.OBJECT_ID_BYTES
    assert ids.task_id_of(obj) == task and ids.index_of(obj) == 3
    assert ids.new_task_id() != task
    assert ids.hex_id(b"\x01\xff") == "01ff"


# -- exceptions ---------------------------------------------------------------------------------


def test_task_error_message_and_dual_class():
    cause = ValueError("bad value")
    err = exceptions.TaskError(
        "fn", "Traceback (most recent call last):\nValueError: bad value", cause, 42, "127.0.0.1"
    )
    assert "fn()" in str(err) and "pid=42" in str(err) and "ValueError: bad value" in str(err)
    dual = err.as_instanceof_cause()
    assert isinstance(dual, ValueError) and isinstance(dual, exceptions.TaskError)
    assert dual.cause is cause and str(dual) == str(err)
    assert type(err.as_instanceof_cause()) is type(dual)  # the class is made once
    back = pickle.loads(pickle.dumps(dual))
    assert isinstance(back, exceptions.TaskError) and back.pid == 42


def test_task_error_without_cause():
    err = exceptions.TaskError("fn", "tb", None)
    assert err.as_instanceof_cause() is err


def test_other_exceptions_pickle():
    for err in (
        exceptions.TaskCancelledError("abcd"),
        exceptions.ActorDiedError("gone"),
        exceptions.GetTimeoutError("slow"),
        exceptions.WorkerCrashedError("crash"),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)


# -- control-plane errors on the wire -----------------------------------------------------------


def test_error_wire_roundtrip():
    err = error_from_wire(error_to_wire(exceptions.TaskUnschedulableError("no node")))
    assert type(err) is exceptions.TaskUnschedulableError and str(err) == "no node"
    err = error_from_wire(error_to_wire(KeyError("key")))
    assert type(err) is KeyError and err.args == ("key",)


@pytest.mark.parametrize(
    "wire",
    [
        ["NoSuchError", "x"],
        ["SystemExit", "x"],
        ["KeyboardInterrupt", "x"],
        ["print", "x"],
        ["__import__", "os"],
        [],
        ["ValueError"],
    ],
)
def test_error_from_wire_never_builds_arbitrary_things(wire):
    err = error_from_wire(wire)
    assert isinstance(err, Exception)
    assert not isinstance(err, (SystemExit, KeyboardInterrupt))
    if wire and wire[0] not in ("ValueError",):
        assert isinstance(err, RemoteError)


# -- output forwarding --------------------------------------------------------------------------


def test_forwarding_stream_forwards_complete_lines():
    import io

    original = io.StringIO()
    forwarded: list[str] = []
    stream = output.ForwardingStream(original, forwarded.append)
    stream.write("partial")
    assert forwarded == []
    stream.write(" line\nsecond\nthi")
    assert forwarded == ["partial line\nsecond"]
    stream.write("rd\n")
    assert forwarded == ["partial line\nsecond", "third"]
    assert original.getvalue() == "partial line\nsecond\nthird\n"


def test_origin_label():
    import os

    assert output.origin_label("fn") == f"fn pid={os.getpid()}"
    assert output.origin_label("") == f"pid={os.getpid()}"


# -- the task executor's queue ------------------------------------------------------------------


class _InlineRuntime:
    """Just enough of a Runtime for the executor: callbacks run at once, in this thread."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    def call_soon(self, fn: Any, *args: Any) -> None:
        fn(*args)


class _BareCore:
    def __init__(self, runtime: _InlineRuntime) -> None:
        self.runtime = runtime
        self.shared = self
        self.on_blocked = self.on_unblocked = None

    def finish(self, obj_id: bytes, wire: list, owner: Any = None) -> list:
        return serialization.inline(wire)

    def release(self, obj_id: bytes, job: bool = False) -> None:
        pass

    def after_borrows_settled(self, obj_ids: list, then: Any) -> None:
        then()


def test_a_task_pushed_again_after_a_bounce_runs_once_and_is_answered():
    # A queued task bounced back to its owner (RESCHEDULE) and pushed to the same worker again
    # used to find its stale queue entry run in its place, answering the old request and
    # leaving the new one unanswered forever.
    import asyncio

    from actorflow._private.worker.executor import TaskExecutor
    from actorflow._private.worker.task_submitter import OK, RESCHEDULE

    loop = asyncio.new_event_loop()
    try:
        executor = TaskExecutor(_BareCore(_InlineRuntime(loop)))  # type: ignore[arg-type]
        runs: list[int] = []

        def fn() -> int:
            runs.append(1)
            return 7

        task_id = ids.new_task_id()
        plain_args = [serialization.PLAIN, [[], {}]]
        first = executor.make_job(task_id, fn, "fn", plain_args, [], 1, None)  # type: ignore[arg-type]
        first.movable = True
        executor.enqueue_main(first)
        executor.bounce_queued()
        assert first.future.result()[0] == RESCHEDULE
        again = executor.make_job(task_id, fn, "fn", plain_args, [], 1, None)  # type: ignore[arg-type]
        again.movable = True
        executor.enqueue_main(again)
        executor.stop()
        executor.run_main_thread()
        assert runs == [1]
        status, wires, _seconds, _contained, started = again.future.result()
        assert started > 0  # when it began running, for its owner's task events
        assert status == OK and serialization.deserialize(wires[0]) == 7
    finally:
        loop.close()
