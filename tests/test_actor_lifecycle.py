"""Actor lifecycle: names and namespaces, get_if_exists, detached actors, kill, exit_actor and
graceful termination.

Named actors live in the shared cluster for the whole session, so every test uses names of its
own (``unique``).
"""

from __future__ import annotations

import os
import uuid

import pytest
from helpers import Signal, process_gone

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)


def unique(prefix: str = "actor") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@actorflow.remote
class Box:
    def __init__(self, value=None) -> None:
        self.value = value
        self.items: list = []

    def get(self):
        return self.value

    def set(self, value) -> None:
        self.value = value

    def pid(self) -> int:
        return os.getpid()

    def append(self, item) -> int:
        self.items.append(item)
        return len(self.items)

    def items_so_far(self) -> list:
        return list(self.items)

    def wait_for(self, signal) -> str:
        actorflow.get(signal.wait.remote(), timeout=30)
        return "released"

    def namespace(self) -> str:
        return actorflow.get_runtime_context().namespace

    def exit_now(self) -> None:
        actorflow.actor.exit_actor()


# -- names ------------------------------------------------------------------------------------


def test_named_actor_is_found_by_get_actor(cluster):
    name = unique()
    box = Box.options(name=name).remote("original")
    found = actorflow.get_actor(name)
    assert found == box
    assert found.actor_id == box.actor_id
    actorflow.get(found.set.remote("via found"))
    assert actorflow.get(box.get.remote()) == "via found"
    assert name in actorflow.list_named_actors()


def test_get_actor_for_a_missing_name_raises_value_error_naming_it(cluster):
    name = unique("missing")
    with pytest.raises(ValueError, match=name):
        actorflow.get_actor(name)


def test_get_actor_rejects_an_empty_name(cluster):
    with pytest.raises(ValueError):
        actorflow.get_actor("")


def test_duplicate_name_raises_value_error(cluster):
    name = unique()
    first = Box.options(name=name).remote(1)
    with pytest.raises(ValueError, match=name):
        Box.options(name=name).remote(2)
    # The first actor is untouched.
    assert actorflow.get(actorflow.get_actor(name).get.remote()) == 1
    assert actorflow.get_actor(name) == first


def test_get_if_exists_returns_the_existing_actor(cluster):
    name = unique()
    first = Box.options(name=name, get_if_exists=True).remote("first")
    second = Box.options(name=name, get_if_exists=True).remote("second")
    assert second == first
    # The constructor did not run again.
    assert actorflow.get(second.get.remote()) == "first"


def test_get_if_exists_needs_a_name(cluster):
    with pytest.raises(ValueError):
        Box.options(get_if_exists=True).remote()


@pytest.mark.parametrize("option", ["name", "namespace"])
def test_name_and_namespace_must_be_non_empty_strings(cluster, option):
    # As Ray: a name or namespace that is not a string is a TypeError, an empty one a
    # ValueError, both raised before anything is created.
    others = {"name": unique()} if option == "namespace" else {}
    with pytest.raises(TypeError, match=option):
        Box.options(**others, **{option: object()}, get_if_exists=True).remote()
    with pytest.raises(ValueError, match=option):
        Box.options(**others, **{option: ""}).remote()
    created = [entry["name"] for entry in actorflow.list_named_actors(all_namespaces=True)]
    assert others.get("name", "") not in created


def test_namespaces_separate_names(cluster):
    name = unique()
    ns_a, ns_b = unique("ns"), unique("ns")
    a = Box.options(name=name, namespace=ns_a).remote("a")
    b = Box.options(name=name, namespace=ns_b).remote("b")  # same name, other namespace: fine
    assert a != b
    assert actorflow.get(actorflow.get_actor(name, namespace=ns_a).get.remote()) == "a"
    assert actorflow.get(actorflow.get_actor(name, namespace=ns_b).get.remote()) == "b"
    # Not visible from the driver's own namespace.
    with pytest.raises(ValueError, match=name):
        actorflow.get_actor(name)
    with pytest.raises(ValueError):
        Box.options(name=name, namespace=ns_a).remote("dup")
    listed = actorflow.list_named_actors(all_namespaces=True)
    assert {"name": name, "namespace": ns_a} in listed
    assert {"name": name, "namespace": ns_b} in listed
    assert name not in actorflow.list_named_actors()


def test_driver_namespace_is_the_default_for_named_actors(cluster):
    name = unique()
    Box.options(name=name).remote()
    driver_ns = actorflow.get_runtime_context().namespace
    found = actorflow.get_actor(name, namespace=driver_ns)
    assert actorflow.get(found.namespace.remote()) == driver_ns


@actorflow.remote
def lookup_and_call(name: str, value) -> object:
    handle = actorflow.get_actor(name)
    actorflow.get(handle.set.remote(value))
    return actorflow.get(handle.get.remote())


def test_get_actor_from_a_task(cluster):
    name = unique()
    box = Box.options(name=name).remote()
    assert actorflow.get(lookup_and_call.remote(name, "from task")) == "from task"
    assert actorflow.get(box.get.remote()) == "from task"


async def test_get_actor_async(cluster):
    name = unique()
    box = Box.options(name=name).remote("async")
    found = await actorflow.get_actor_async(name)
    assert found == box
    assert await found.get.remote() == "async"


def test_name_is_released_when_the_actor_is_killed(cluster):
    name = unique()
    old = Box.options(name=name).remote("old")
    actorflow.get(old.get.remote())
    actorflow.kill(old)
    with pytest.raises(ValueError, match=name):
        actorflow.get_actor(name)
    new = Box.options(name=name).remote("new")
    assert new != old
    assert actorflow.get(actorflow.get_actor(name).get.remote()) == "new"


def test_detached_actor(cluster):
    name = unique("detached")
    box = Box.options(name=name, lifetime="detached").remote("kept")
    assert actorflow.get(actorflow.get_actor(name).get.remote()) == "kept"
    actorflow.kill(box)
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(box.get.remote(), timeout=30)


def test_invalid_lifetime_is_rejected(cluster):
    with pytest.raises(ValueError, match="lifetime"):
        Box.options(lifetime="forever")


# -- kill -------------------------------------------------------------------------------------


def test_kill_fails_running_and_later_calls(cluster, poll_until):
    signal = Signal.remote()
    box = Box.remote()
    pid = actorflow.get(box.pid.remote())
    running = box.wait_for.remote(signal)
    poll_until(lambda: actorflow.get(signal.num_waiters.remote()) == 1, timeout=30)
    queued = box.get.remote()
    actorflow.kill(box, no_restart=True)
    for ref in (running, queued, box.get.remote()):
        with pytest.raises(exceptions.ActorDiedError, match="killed"):
            actorflow.get(ref, timeout=30)
    poll_until(lambda: process_gone(pid), timeout=30, message=f"actor process {pid} still runs")


@actorflow.remote
class SlowConstructor:
    def __init__(self, signal) -> None:
        actorflow.get(signal.wait.remote(), timeout=30)

    def ping(self) -> str:
        return "pong"


def test_kill_while_the_constructor_runs(cluster, poll_until):
    signal = Signal.remote()
    actor = SlowConstructor.remote(signal)
    poll_until(lambda: actorflow.get(signal.num_waiters.remote()) == 1, timeout=30)
    pending = actor.ping.remote()
    actorflow.kill(actor)
    for ref in (pending, actor.ping.remote()):
        with pytest.raises(exceptions.ActorDiedError, match="killed"):
            actorflow.get(ref, timeout=30)


def test_kill_takes_only_a_handle(cluster):
    with pytest.raises(TypeError):
        actorflow.kill("not a handle")


def test_kill_is_not_restarted_even_with_restarts_left(cluster):
    box = Box.options(max_restarts=3).remote()
    actorflow.get(box.pid.remote())
    actorflow.kill(box)  # no_restart defaults to True
    with pytest.raises(exceptions.ActorDiedError, match="killed"):
        actorflow.get(box.get.remote(), timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(box.get.remote(), timeout=30)


# -- exit_actor -------------------------------------------------------------------------------


@actorflow.remote
class Quitter:
    def __init__(self) -> None:
        self.calls = 0

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> str:
        self.calls += 1
        return "pong"

    def quit(self) -> str:
        actorflow.actor.exit_actor()
        return "not reached"

    async def quit_async(self) -> str:
        actorflow.actor.exit_actor()
        return "not reached"


def _check_exited(handle, pid, poll_until) -> None:
    poll_until(lambda: process_gone(pid), timeout=30, message=f"actor process {pid} still runs")
    for _ in range(2):
        with pytest.raises(exceptions.ActorDiedError) as info:
            actorflow.get(handle.ping.remote(), timeout=30)
        assert "exit" in str(info.value)


def test_exit_actor_ends_the_actor_without_restart(cluster, poll_until):
    q = Quitter.options(max_restarts=2).remote()
    pid = actorflow.get(q.pid.remote())
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(q.quit.remote(), timeout=30)
    _check_exited(q, pid, poll_until)


def test_exit_actor_in_async_method(cluster, poll_until):
    q = Quitter.options(max_restarts=1).remote()
    pid = actorflow.get(q.pid.remote())
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(q.quit_async.remote(), timeout=30)
    _check_exited(q, pid, poll_until)


def test_exit_actor_releases_the_name(cluster, poll_until):
    name = unique()
    q = Quitter.options(name=name).remote()
    pid = actorflow.get(q.pid.remote())
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(q.quit.remote(), timeout=30)
    poll_until(lambda: process_gone(pid), timeout=30)
    with pytest.raises(ValueError, match=name):
        actorflow.get_actor(name)


def test_exit_actor_outside_an_actor_raises(cluster):
    with pytest.raises(TypeError):
        actorflow.actor.exit_actor()


# -- graceful termination ---------------------------------------------------------------------


def test_ray_terminate_lets_queued_calls_finish(cluster, poll_until):
    signal = Signal.remote()
    box = Box.remote()
    pid = actorflow.get(box.pid.remote())
    blocked = box.wait_for.remote(signal)
    poll_until(lambda: actorflow.get(signal.num_waiters.remote()) == 1, timeout=30)
    queued = [box.append.remote(i) for i in range(20)]
    terminate = box.__ray_terminate__.remote()
    actorflow.get(signal.send.remote())
    # Everything queued before the terminate call runs to completion, in order.
    assert actorflow.get(blocked, timeout=30) == "released"
    assert actorflow.get(queued, timeout=30) == list(range(1, 21))
    try:
        actorflow.get(terminate, timeout=30)
    except exceptions.ActorDiedError:
        pass  # the terminate call itself may report the actor's end
    # Calls after it fail: the actor is gone, and not restarted.
    poll_until(lambda: process_gone(pid), timeout=30, message=f"actor process {pid} still runs")
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(box.get.remote(), timeout=30)


@pytest.mark.parametrize("how", ["exit_actor", "__ray_terminate__"])
def test_calls_submitted_after_the_exit_do_not_run(cluster, poll_until, how):
    signal = Signal.remote()
    box = Box.remote(0)
    blocked = box.wait_for.remote(signal)
    poll_until(lambda: actorflow.get(signal.num_waiters.remote()) == 1, timeout=30)
    if how == "exit_actor":
        exit_ref = box.exit_now.remote()
    else:
        exit_ref = box.__ray_terminate__.remote()
    later = [box.append.remote(i) for i in range(5)]  # queued behind the exit, at the actor
    actorflow.get(signal.send.remote())
    assert actorflow.get(blocked, timeout=30) == "released"
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(exit_ref, timeout=30)
    outcomes = []
    for ref in later:
        try:
            outcomes.append(actorflow.get(ref, timeout=30))
        except exceptions.ActorDiedError:
            outcomes.append("died")
    assert outcomes == ["died"] * 5


@actorflow.remote
class AsyncWorker:
    def __init__(self) -> None:
        self.done = 0

    async def pid(self) -> int:
        return os.getpid()

    async def work(self, signal) -> int:
        await signal.wait.remote()
        self.done += 1
        return self.done


def test_ray_terminate_on_async_actor_lets_calls_in_flight_finish(cluster, poll_until):
    signal = Signal.remote()
    worker = AsyncWorker.remote()
    pid = actorflow.get(worker.pid.remote())
    in_flight = [worker.work.remote(signal) for _ in range(5)]
    poll_until(lambda: actorflow.get(signal.num_waiters.remote()) == 5, timeout=30)
    terminate = worker.__ray_terminate__.remote()
    actorflow.get(signal.send.remote())
    assert sorted(actorflow.get(in_flight, timeout=30)) == [1, 2, 3, 4, 5]
    try:
        actorflow.get(terminate, timeout=30)
    except exceptions.ActorDiedError:
        pass
    poll_until(lambda: process_gone(pid), timeout=30, message=f"actor process {pid} still runs")


# The creator's lifetime with two drivers (detached vs named non-detached actors) is tested on
# a multi-node cluster in test_cluster.py.
