"""Actors through the public API: creation, calls, ordering, errors, methods, handles.

Uses the shared ``cluster`` fixture from conftest.py. Synchronisation between the test and an
actor goes through a ``Signal`` actor (an asyncio.Event behind a handle), never through sleeps.
"""

from __future__ import annotations

import asyncio
import os
import pickle

import cloudpickle
import pytest
from helpers import Signal

import actorflow
from actorflow import exceptions
from actorflow.actor import ActorHandle

pytestmark = pytest.mark.timeout(60)


class UserError(Exception):
    pass


@actorflow.remote
class Counter:
    def __init__(self, start: int = 0, *, step: int = 1) -> None:
        self.value = start
        self.step = step
        self.items: list = []

    def incr(self) -> int:
        self.value += self.step
        return self.value

    def get(self) -> int:
        return self.value

    def append(self, item) -> int:
        self.items.append(item)
        return len(self.items)

    def get_items(self) -> list:
        return list(self.items)

    def fail(self, message: str) -> None:
        raise UserError(message)

    def pid(self) -> int:
        return os.getpid()

    def echo(self, a, b=None, *, c=None):
        return (a, b, c)

    @actorflow.method(num_returns=2)
    def pair(self, x):
        return x, x * 2

    @actorflow.method(num_returns=3)
    def triple(self):
        return "a", "b", "c"

    @actorflow.method(num_returns=2)
    def pair_fails(self):
        raise UserError("no pair")

    @actorflow.method(num_returns=2)
    def pair_wrong_count(self):
        return 1, 2, 3


# -- creation and calls ---------------------------------------------------------------------------


@actorflow.remote
class SlowStart:
    def __init__(self, gate) -> None:
        # Blocks until the test opens the gate, which it does only after .remote() returned.
        self.opened = actorflow.get(gate.wait.remote(), timeout=30)

    def ready(self) -> str:
        return "ready" if self.opened else "closed"


def test_remote_returns_handle_before_constructor_finishes(cluster):
    gate = Signal.remote()
    handle = SlowStart.remote(gate)  # would time out in the constructor if this waited for it
    assert isinstance(handle, ActorHandle)
    ref = handle.ready.remote()  # a call made before the constructor finished is held, not lost
    ready, _ = actorflow.wait([ref], timeout=0)
    assert ready == []
    actorflow.get(gate.send.remote())
    assert actorflow.get(ref, timeout=30) == "ready"


def test_constructor_args_and_state_persist_between_calls(cluster):
    c = Counter.remote(10, step=5)
    assert actorflow.get(c.get.remote()) == 10
    assert actorflow.get([c.incr.remote() for _ in range(3)]) == [15, 20, 25]
    assert actorflow.get(c.get.remote()) == 25


def test_each_actor_has_its_own_process_and_state(cluster):
    a, b = Counter.remote(), Counter.remote(100)
    actorflow.get([a.incr.remote(), a.incr.remote(), b.incr.remote()])
    assert actorflow.get([a.get.remote(), b.get.remote()]) == [2, 101]
    pid_a, pid_b = actorflow.get([a.pid.remote(), b.pid.remote()])
    assert pid_a != pid_b
    assert os.getpid() not in (pid_a, pid_b)


def test_per_caller_fifo_order_200_appends(cluster):
    c = Counter.remote()
    refs = [c.append.remote(i) for i in range(200)]
    assert actorflow.get(refs) == list(range(1, 201))
    assert actorflow.get(c.get_items.remote()) == list(range(200))


@actorflow.remote
def wait_then_return(gate, value):
    actorflow.get(gate.wait.remote(), timeout=30)
    return value


def test_call_waiting_for_its_argument_holds_back_later_calls(cluster):
    gate = Signal.remote()
    c = Counter.remote()
    late = wait_then_return.remote(gate, "first")
    first = c.append.remote(late)  # its argument is not ready yet
    second = c.append.remote("second")
    ready, _ = actorflow.wait([second], timeout=0)
    assert ready == []
    actorflow.get(gate.send.remote())
    assert actorflow.get([first, second], timeout=30) == [1, 2]
    assert actorflow.get(c.get_items.remote()) == ["first", "second"]


def test_kwargs_and_defaults_reach_the_method(cluster):
    c = Counter.remote()
    assert actorflow.get(c.echo.remote(1)) == (1, None, None)
    assert actorflow.get(c.echo.remote(1, 2, c=3)) == (1, 2, 3)
    assert actorflow.get(c.echo.remote(a=[1, 2], b={"k": "v"})) == ([1, 2], {"k": "v"}, None)


def test_object_ref_argument_is_resolved(cluster):
    c = Counter.remote()
    ref = actorflow.put({"x": 1})
    assert actorflow.get(c.append.remote(ref)) == 1
    assert actorflow.get(c.get_items.remote()) == [{"x": 1}]


# -- errors -----------------------------------------------------------------------------------


def test_method_error_reaches_caller_and_actor_keeps_running(cluster):
    c = Counter.remote()
    actorflow.get(c.incr.remote())
    with pytest.raises(UserError) as info:
        actorflow.get(c.fail.remote("bad input"))
    err = info.value
    assert isinstance(err, exceptions.TaskError)
    assert isinstance(err.cause, UserError)
    assert str(err.cause) == "bad input"
    assert "bad input" in str(err)
    # The same process keeps serving, with its state intact.
    assert actorflow.get(c.incr.remote()) == 2


@actorflow.remote
class AsyncFailer:
    async def fail(self, message: str) -> None:
        await asyncio.sleep(0)
        raise UserError(message)

    async def ok(self) -> str:
        return "ok"


def test_async_method_error_reaches_caller(cluster):
    a = AsyncFailer.remote()
    with pytest.raises(UserError) as info:
        actorflow.get(a.fail.remote("async bad"))
    assert isinstance(info.value, exceptions.TaskError)
    assert str(info.value.cause) == "async bad"
    assert actorflow.get(a.ok.remote()) == "ok"


def test_method_error_caught_as_task_error(cluster):
    c = Counter.remote()
    with pytest.raises(exceptions.TaskError) as info:
        actorflow.get(c.fail.remote("x"))
    assert "Counter.fail" in str(info.value)


@actorflow.remote
class BrokenConstructor:
    def __init__(self, message: str) -> None:
        raise UserError(message)

    def method(self) -> int:
        return 1


def test_constructor_error_fails_every_call_with_actor_died(cluster):
    handle = BrokenConstructor.remote("ctor failed")
    for _ in range(2):
        with pytest.raises(exceptions.ActorDiedError) as info:
            actorflow.get(handle.method.remote(), timeout=30)
        cause = info.value.cause
        assert isinstance(cause, exceptions.TaskError)
        assert isinstance(cause.cause, UserError)
        assert str(cause.cause) == "ctor failed"


def test_wrong_arity_fails_at_remote(cluster):
    c = Counter.remote()
    with pytest.raises(TypeError):
        c.incr.remote(1)
    with pytest.raises(TypeError):
        c.append.remote()
    with pytest.raises(TypeError):
        c.echo.remote(1, d=4)
    with pytest.raises(TypeError):
        Counter.remote(1, 2)
    with pytest.raises(TypeError):
        Counter.remote(stepp=2)
    # Nothing was sent: the actor saw no calls.
    assert actorflow.get(c.get.remote()) == 0


def test_unknown_method_fails_at_remote(cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="nope"):
        c.nope.remote()
    with pytest.raises(AttributeError):
        c._private_thing.remote()


def test_actor_class_and_methods_cannot_be_called_directly(cluster):
    with pytest.raises(TypeError):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError):
        c.incr()


# -- methods ----------------------------------------------------------------------------------


def test_num_returns_2(cluster):
    c = Counter.remote()
    refs = c.pair.remote(21)
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, actorflow.ObjectRef) for r in refs)
    assert actorflow.get(refs) == [21, 42]
    a, b, d = c.triple.remote()
    assert actorflow.get([d, b, a]) == ["c", "b", "a"]


def test_num_returns_2_errors(cluster):
    c = Counter.remote()
    for ref in c.pair_fails.remote():
        with pytest.raises(UserError):
            actorflow.get(ref)
    for ref in c.pair_wrong_count.remote():
        with pytest.raises(exceptions.TaskError, match="num_returns"):
            actorflow.get(ref)
    assert actorflow.get(c.incr.remote()) == 1


def test_unserializable_argument_fails_at_remote(cluster):
    import threading

    c = Counter.remote()
    with pytest.raises(exceptions.SerializationError):
        c.append.remote(threading.Lock())
    assert actorflow.get(c.get_items.remote()) == []


def test_num_returns_via_method_options(cluster):
    c = Counter.remote()
    refs = c.echo.options(num_returns=3).remote("x", "y", c="z")
    assert actorflow.get(refs) == ["x", "y", "z"]


class Base:
    kind = "base"
    created = 0

    def __init__(self, value: int) -> None:
        self.value = value
        type(self).created += 1

    def describe(self) -> str:
        return f"{self.kind}:{self.value}"

    def base_only(self) -> str:
        return "from base"

    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    @classmethod
    def class_kind(cls) -> str:
        return cls.kind


@actorflow.remote
class Derived(Base):
    kind = "derived"

    def __init__(self, value: int) -> None:
        super().__init__(value + 1)

    def describe(self) -> str:
        return "D(" + super().describe() + ")"

    def inside(self) -> tuple:
        return (self.double(self.value), self.class_kind(), kind_of(self), type(self).created)

    def set_class_attr(self, value: str) -> str:
        type(self).kind = value
        return self.class_kind()


def kind_of(obj) -> str:
    return obj.kind


def test_inheritance(cluster):
    d = Derived.remote(1)
    assert actorflow.get(d.describe.remote()) == "D(derived:2)"
    assert actorflow.get(d.base_only.remote()) == "from base"


def test_class_attributes_static_and_class_methods(cluster):
    d = Derived.remote(5)
    # Through the handle.
    assert actorflow.get(d.double.remote(21)) == 42
    assert actorflow.get(d.class_kind.remote()) == "derived"
    # Inside the actor.
    assert actorflow.get(d.inside.remote()) == (12, "derived", "derived", 1)
    # Class attributes are per actor process: changing one is seen by later calls.
    assert actorflow.get(d.set_class_attr.remote("changed")) == "changed"
    assert actorflow.get(d.describe.remote()) == "D(changed:6)"
    other = Derived.remote(0)
    assert actorflow.get(other.class_kind.remote()) == "derived"


def test_static_method_wrong_arity_fails_at_remote(cluster):
    d = Derived.remote(0)
    with pytest.raises(TypeError):
        d.double.remote()
    with pytest.raises(TypeError):
        d.class_kind.remote(1)


# -- handles ----------------------------------------------------------------------------------


def test_handle_identity_and_pickling(cluster):
    c = Counter.remote()
    copy = pickle.loads(cloudpickle.dumps(c))
    assert copy == c and hash(copy) == hash(c)
    assert copy.actor_id == c.actor_id
    assert isinstance(c.actor_id, str) and c.actor_id
    assert Counter.remote() != c
    actorflow.get(copy.incr.remote())
    assert actorflow.get(c.get.remote()) == 1


@actorflow.remote
def use_counter(counter, times: int) -> int:
    refs = [counter.incr.remote() for _ in range(times)]
    return actorflow.get(refs)[-1]


def test_handle_passed_to_task(cluster):
    c = Counter.remote()
    assert actorflow.get(use_counter.remote(c, 3)) == 3
    assert actorflow.get(c.get.remote()) == 3


def test_handle_inside_a_list_passed_to_task(cluster):
    c = Counter.remote()

    @actorflow.remote
    def use_nested(handles):
        return actorflow.get(handles[0].incr.remote())

    assert actorflow.get(use_nested.remote([c])) == 1
    assert actorflow.get(c.get.remote()) == 1


@actorflow.remote
class Caller:
    def __init__(self, target=None) -> None:
        self.target = target

    def call_target(self, n: int) -> list:
        return actorflow.get([self.target.append.remote(i) for i in range(n)])

    def call_given(self, handle) -> int:
        return actorflow.get(handle.incr.remote())

    def make_counter(self, start: int):
        # Actors create actors, and return the handle.
        self.child = Counter.remote(start)
        return self.child

    def child_value(self) -> int:
        return actorflow.get(self.child.get.remote())


def test_handle_passed_to_actor_constructor_and_method(cluster):
    c = Counter.remote()
    caller = Caller.remote(c)
    assert actorflow.get(caller.call_target.remote(5)) == [1, 2, 3, 4, 5]
    assert actorflow.get(c.get_items.remote()) == [0, 1, 2, 3, 4]
    assert actorflow.get(caller.call_given.remote(c)) == 1


def test_actor_creates_actor_and_returns_handle(cluster):
    caller = Caller.remote()
    child = actorflow.get(caller.make_counter.remote(40))
    assert isinstance(child, ActorHandle)
    assert actorflow.get(child.incr.remote()) == 41
    # The creator and the driver reach the same actor.
    assert actorflow.get(caller.child_value.remote()) == 41


@actorflow.remote
class SelfReturning:
    def me(self):
        return self.handle

    def set_me(self, handle) -> None:
        self.handle = handle

    def ping(self) -> str:
        return "pong"


def test_handle_returned_from_method(cluster):
    s = SelfReturning.remote()
    actorflow.get(s.set_me.remote(s))
    back = actorflow.get(s.me.remote())
    assert back == s
    assert actorflow.get(back.ping.remote()) == "pong"


@actorflow.remote
def task_creates_actor(start: int):
    counter = Counter.remote(start)
    first = actorflow.get(counter.incr.remote())
    return first, counter


def test_task_creates_actor(cluster):
    first, counter = actorflow.get(task_creates_actor.remote(7))
    assert first == 8
    assert isinstance(counter, ActorHandle)
    assert actorflow.get(counter.incr.remote()) == 9


# -- runtime context --------------------------------------------------------------------------


@actorflow.remote
class ContextReporter:
    def report(self) -> dict:
        ctx = actorflow.get_runtime_context()
        return {
            "actor_id": ctx.get_actor_id(),
            "namespace": ctx.namespace,
            "get_namespace": ctx.get_namespace(),
            "job_id": ctx.get_job_id(),
            "node_id": ctx.get_node_id(),
            "worker_id": ctx.get_worker_id(),
            "task_id": ctx.get_task_id(),
            "pid": os.getpid(),
        }

    async def report_async(self) -> dict:
        ctx = actorflow.get_runtime_context()
        return {"actor_id": ctx.get_actor_id(), "task_id": ctx.get_task_id()}


def test_runtime_context_inside_actor(cluster):
    a, b = ContextReporter.remote(), ContextReporter.remote()
    driver = actorflow.get_runtime_context()
    assert driver.get_actor_id() is None
    first, second, other = actorflow.get([a.report.remote(), a.report.remote(), b.report.remote()])
    assert first["actor_id"] == a.actor_id
    assert other["actor_id"] == b.actor_id
    assert first["namespace"] == first["get_namespace"] == driver.namespace
    assert first["job_id"] == driver.get_job_id()
    assert first["node_id"] == driver.get_node_id()  # a single-node cluster
    assert first["worker_id"] and first["worker_id"] != driver.get_worker_id()
    assert first["worker_id"] == second["worker_id"] != other["worker_id"]
    assert first["task_id"] and second["task_id"] and first["task_id"] != second["task_id"]


def test_runtime_context_inside_async_actor(cluster):
    a = ContextReporter.remote()
    r1, r2 = actorflow.get([a.report_async.remote(), a.report_async.remote()])
    assert r1["actor_id"] == r2["actor_id"] == a.actor_id
    assert r1["task_id"] and r1["task_id"] != r2["task_id"]


# -- asyncio drivers --------------------------------------------------------------------------


async def test_await_actor_calls_from_asyncio(cluster):
    c = Counter.remote()
    assert await c.incr.remote() == 1
    results = await asyncio.gather(*[c.append.remote(i) for i in range(50)])
    assert results == list(range(1, 51))
    assert await c.get_items.remote() == list(range(50))
    with pytest.raises(UserError):
        await c.fail.remote("async caller")
    a, b = c.pair.remote(3)
    assert (await a, await b) == (3, 6)


async def test_asyncio_task_awaiting_a_gated_call_does_not_block_the_loop(cluster):
    gate = Signal.remote()
    c = Counter.remote()
    waiting = asyncio.ensure_future(gate.wait.remote())
    # The loop keeps running other actor calls while one await is pending.
    assert await c.incr.remote() == 1
    assert not waiting.done()
    await gate.send.remote()
    assert await asyncio.wait_for(waiting, 30) is True
