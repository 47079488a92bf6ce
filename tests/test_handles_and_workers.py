"""Actor handles counted across processes, value snapshots, and how workers are started."""

from __future__ import annotations

import gc
import os
import random

import numpy as np
import pytest

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)


@actorflow.remote
class Pid:
    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> str:
        return "pong"


@actorflow.remote
def make_actor_and_return_it():
    handle = Pid.remote()
    actorflow.get(handle.ping.remote())
    return handle


@actorflow.remote
def ping_later(handles, path):
    # Wait until the driver has dropped its own handle, then use the one we were given.
    while not os.path.exists(path):
        pass
    return actorflow.get(handles[0].ping.remote())


def _actor_pid(handle) -> int:
    return actorflow.get(handle.pid.remote(), timeout=30)


def test_actor_ends_when_its_last_handle_is_dropped(cluster, poll_until, process_gone):
    handle = Pid.remote()
    pid = _actor_pid(handle)
    del handle
    gc.collect()
    poll_until(lambda: process_gone(pid), timeout=20)


def test_named_and_detached_actors_are_not_collected(cluster, process_gone):
    named = Pid.options(name="kept-by-name").remote()
    detached = Pid.options(lifetime="detached").remote()
    pids = [_actor_pid(named), _actor_pid(detached)]
    del named
    gc.collect()
    # Well past the collection grace period: still there, still answering.
    again = actorflow.get_actor("kept-by-name")
    assert actorflow.get(again.ping.remote(), timeout=30) == "pong"
    assert actorflow.get(detached.ping.remote(), timeout=30) == "pong"
    assert not any(process_gone(pid) for pid in pids)
    actorflow.kill(again)
    actorflow.kill(detached)


def test_handle_in_task_arguments_keeps_the_actor_alive(cluster, tmp_path):
    handle = Pid.remote()
    _actor_pid(handle)
    flag = tmp_path / "dropped"
    result = ping_later.remote([handle], str(flag))
    del handle
    gc.collect()
    flag.write_text("")
    assert actorflow.get(result, timeout=30) == "pong"


def test_handle_returned_by_a_task_stays_usable_and_is_collected(cluster, poll_until, process_gone):
    handle = actorflow.get(make_actor_and_return_it.remote(), timeout=30)
    pid = _actor_pid(handle)
    # The creating worker dropped its own handle long ago; ours keeps the actor.
    assert actorflow.get(handle.ping.remote(), timeout=30) == "pong"
    del handle
    gc.collect()
    poll_until(lambda: process_gone(pid), timeout=20)


def test_a_pending_call_keeps_the_actor_until_answered(cluster):
    handle = Pid.remote()
    ref = handle.ping.remote()
    del handle  # the pending call keeps the actor until it is answered
    assert actorflow.get(ref, timeout=30) == "pong"


def test_put_takes_a_snapshot(cluster):
    array = np.zeros(1000)
    ref = actorflow.put(array)
    array[:] = 7
    value = actorflow.get(ref)
    assert value.sum() == 0
    assert not value.flags.writeable  # values from get are read-only, as in Ray


@actorflow.remote
def total(values) -> float:
    return float(values.sum())


def test_task_arguments_are_a_snapshot(cluster):
    array = np.ones(1000)
    ref = total.remote(array)
    array[:] = 0
    assert actorflow.get(ref, timeout=30) == 1000.0


@actorflow.remote
def random_and_pid():
    return random.random(), os.getpid()


def test_without_the_fork_server_workers_are_spawned(make_cluster, monkeypatch, worker_processes):
    monkeypatch.setenv("ACTORFLOW_USE_FORKSERVER", "0")
    make_cluster(num_cpus=1)
    assert actorflow.get(random_and_pid.remote(), timeout=30)[1] in worker_processes()
    actor = Pid.remote()
    assert actorflow.get(actor.ping.remote(), timeout=30) == "pong"
    with open(f"/proc/{_actor_pid(actor)}/cmdline", "rb") as f:
        assert b"actorflow._private.worker.main" in f.read()


def test_lost_ref_raises_instead_of_hanging(cluster):
    ref = actorflow.put("gone soon")
    stale = actorflow.ObjectRef(b"\x00" * 20, ref.owner)
    with pytest.raises(exceptions.ObjectLostError):
        actorflow.get(stale, timeout=10)


@actorflow.remote
def fails():
    raise ValueError("no value for the constructor")


@actorflow.remote
class TakesValue:
    def __init__(self, value) -> None:
        self.value = value

    def get(self):
        return self.value


def test_constructor_argument_that_failed_kills_the_actor(cluster):
    actor = TakesValue.remote(fails.remote())
    with pytest.raises(exceptions.ActorDiedError) as info:
        actorflow.get(actor.get.remote(), timeout=30)
    assert "no value for the constructor" in str(info.value)
    good = TakesValue.remote(actorflow.put(5))
    assert actorflow.get(good.get.remote(), timeout=30) == 5


@actorflow.remote
class Parent:
    """Owns the children it creates: they live in other processes, tied to this one."""

    def __init__(self) -> None:
        self.children: list = []

    def spawn(self, detached: bool) -> int:
        options = {"lifetime": "detached"} if detached else {}
        child = Pid.options(**options).remote()
        self.children.append(child)
        return actorflow.get(child.pid.remote())


def test_actors_die_with_their_owner_unless_detached(cluster, poll_until, process_gone):
    parent = Parent.remote()
    owned_pid = actorflow.get(parent.spawn.remote(False), timeout=30)
    detached_pid = actorflow.get(parent.spawn.remote(True), timeout=30)
    actorflow.kill(parent)  # the owner's process ends
    poll_until(lambda: process_gone(owned_pid), timeout=20)
    assert not process_gone(detached_pid)
    os.kill(detached_pid, 9)  # end it by its id: detached actors outlive everything else here
    poll_until(lambda: process_gone(detached_pid), timeout=20)


def _frozen_and_cycle_collected() -> tuple[int, bool]:
    import weakref

    class Node:
        pass

    node = Node()
    node.self = node  # a cycle: only the collector frees it
    alive = weakref.ref(node)
    del node
    gc.collect()
    return gc.get_freeze_count(), alive() is None


@actorflow.remote
def frozen_and_cycle_collected() -> tuple[int, bool]:
    return _frozen_and_cycle_collected()


@actorflow.remote
class CollectsCycles:
    def check(self) -> tuple[int, bool]:
        return _frozen_and_cycle_collected()


def test_workers_keep_start_up_objects_out_of_collections_and_still_collect(cluster):
    # A worker freezes what its start-up made (full collections skip it); what tasks and
    # actors make afterwards is collected as before.
    for ref in (frozen_and_cycle_collected.remote(), CollectsCycles.remote().check.remote()):
        frozen, collected = actorflow.get(ref, timeout=30)
        assert frozen > 1000
        assert collected
