"""Actor faults: the actor's process dies (a method calls os._exit), restarts (max_restarts),
retries of calls in flight (max_task_retries), calls made while restarting, and the errors
callers see once the actor is dead for good.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest
from helpers import process_gone

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)


@actorflow.remote
class Gate:
    """``enter()`` returns at once the first ``free`` times, then waits until ``open()``."""

    def __init__(self, free: int = 1) -> None:
        self.free = free
        self.entered = 0
        self.opened = asyncio.Event()

    async def enter(self) -> int:
        self.entered += 1
        if self.entered > self.free:
            await asyncio.wait_for(self.opened.wait(), 30)
        return self.entered

    async def open(self) -> None:
        self.opened.set()

    async def count(self) -> int:
        return self.entered


@actorflow.remote
class Phoenix:
    """Logs every constructor run (its pid) to a file; ``die`` ends the process."""

    def __init__(self, log: str, gate=None) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        if gate is not None:
            actorflow.get(gate.enter.remote(), timeout=30)
        self.log = log
        self.items: list = []

    def pid(self) -> int:
        return os.getpid()

    def die(self, code: int = 1) -> None:
        os._exit(code)

    def die_once(self, marker: str) -> int:
        """Dies the first time it is called (per marker), returns the pid afterwards."""
        if not os.path.exists(marker):
            Path(marker).touch()
            os._exit(3)
        return os.getpid()

    def die_always(self, attempts: str) -> None:
        with open(attempts, "a") as f:
            f.write("attempt\n")
        os._exit(4)

    def append(self, item) -> int:
        self.items.append(item)
        return len(self.items)

    def items_so_far(self) -> list:
        return list(self.items)


def constructor_pids(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


# -- restarts ---------------------------------------------------------------------------------


def test_restart_runs_the_constructor_again_in_a_new_process(cluster, tmp_path):
    log = tmp_path / "ctor.log"
    actor = Phoenix.options(max_restarts=1).remote(str(log))
    first_pid = actorflow.get(actor.pid.remote())
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(actor.die.remote(), timeout=30)  # no max_task_retries: the caller sees it
    second_pid = actorflow.get(actor.pid.remote(), timeout=30)
    assert second_pid != first_pid
    assert constructor_pids(log) == [first_pid, second_pid]
    # The restarted actor starts from its constructor's state and works normally.
    assert actorflow.get(actor.append.remote("x")) == 1
    assert process_gone(first_pid)


def test_no_restart_by_default(cluster, tmp_path):
    actor = Phoenix.remote(str(tmp_path / "ctor.log"))
    pid = actorflow.get(actor.pid.remote())
    with pytest.raises(exceptions.ActorDiedError, match="exited with code 7"):
        actorflow.get(actor.die.remote(7), timeout=30)
    for _ in range(2):
        with pytest.raises(exceptions.ActorDiedError, match="exited with code 7"):
            actorflow.get(actor.pid.remote(), timeout=30)
    assert constructor_pids(tmp_path / "ctor.log") == [pid]


def test_restarts_run_out(cluster, tmp_path):
    log = tmp_path / "ctor.log"
    actor = Phoenix.options(max_restarts=2).remote(str(log))
    pids = [actorflow.get(actor.pid.remote())]
    for _ in range(2):
        with pytest.raises(exceptions.ActorDiedError):
            actorflow.get(actor.die.remote(5), timeout=30)
        pids.append(actorflow.get(actor.pid.remote(), timeout=30))
    assert len(set(pids)) == 3
    with pytest.raises(exceptions.ActorDiedError, match="exited with code 9"):
        actorflow.get(actor.die.remote(9), timeout=30)
    # Dead for good: every later call fails with the cause, and no new process is started.
    for _ in range(2):
        with pytest.raises(exceptions.ActorDiedError, match="exited with code 9") as info:
            actorflow.get(actor.pid.remote(), timeout=30)
        assert "restart" in str(info.value)
    assert constructor_pids(log) == pids


def test_unlimited_restarts(cluster, tmp_path):
    log = tmp_path / "ctor.log"
    actor = Phoenix.options(max_restarts=-1).remote(str(log))
    pids = [actorflow.get(actor.pid.remote())]
    for _ in range(4):
        with pytest.raises(exceptions.ActorDiedError):
            actorflow.get(actor.die.remote(), timeout=30)
        pids.append(actorflow.get(actor.pid.remote(), timeout=30))
    assert len(set(pids)) == 5
    assert constructor_pids(log) == pids


def test_calls_made_while_restarting_are_queued_not_lost(cluster, tmp_path, poll_until):
    log = tmp_path / "ctor.log"
    gate = Gate.remote(free=1)  # the first constructor passes; the restart waits for open()
    actor = Phoenix.options(max_restarts=1).remote(str(log), gate)
    first_pid = actorflow.get(actor.pid.remote())
    crash = actor.die.remote()
    # The restarted constructor is running (and held at the gate): the actor is restarting.
    poll_until(lambda: actorflow.get(gate.count.remote()) == 2, timeout=30)
    refs = [actor.append.remote(i) for i in range(10)]
    ready, _ = actorflow.wait(refs, num_returns=1, timeout=0)
    assert ready == []  # the new constructor cannot have finished: the gate is closed
    actorflow.get(gate.open.remote())
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(crash, timeout=30)
    assert actorflow.get(refs, timeout=30) == list(range(1, 11))
    assert actorflow.get(actor.items_so_far.remote()) == list(range(10))
    second_pid = actorflow.get(actor.pid.remote())
    assert second_pid != first_pid
    assert constructor_pids(log) == [first_pid, second_pid]


def test_call_lost_with_the_process_fails_without_waiting_for_the_restart(
    cluster, tmp_path, poll_until
):
    gate = Gate.remote(free=1)
    actor = Phoenix.options(max_restarts=1).remote(str(tmp_path / "ctor.log"), gate)
    actorflow.get(actor.pid.remote())
    crash = actor.die.remote()
    poll_until(lambda: actorflow.get(gate.count.remote()) == 2, timeout=30)  # restarting
    try:
        with pytest.raises(exceptions.ActorDiedError):
            actorflow.get(crash, timeout=5)  # the process is gone: nothing left to wait for
    finally:
        actorflow.get(gate.open.remote())
        actorflow.get(actor.pid.remote(), timeout=30)


def test_constructor_error_is_not_restarted(cluster, tmp_path):
    log = tmp_path / "ctor.log"
    actor = BrokenPhoenix.options(max_restarts=3).remote(str(log))
    for _ in range(2):
        with pytest.raises(exceptions.ActorDiedError) as info:
            actorflow.get(actor.pid.remote(), timeout=30)
        assert isinstance(info.value.cause, exceptions.TaskError)
        assert isinstance(info.value.cause.cause, RuntimeError)
    assert len(constructor_pids(log)) == 1


@actorflow.remote
class BrokenPhoenix:
    def __init__(self, log: str) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        raise RuntimeError("constructor failed")

    def pid(self) -> int:
        return os.getpid()


def test_kill_with_restart_allowed_restarts_the_actor(cluster, tmp_path, poll_until):
    log = tmp_path / "ctor.log"
    actor = Phoenix.options(max_restarts=1, max_task_retries=-1).remote(str(log))
    first_pid = actorflow.get(actor.pid.remote())
    actorflow.kill(actor, no_restart=False)
    second_pid = poll_until(
        lambda: (pid := actorflow.get(actor.pid.remote(), timeout=30)) != first_pid and pid,
        timeout=30,
    )
    assert constructor_pids(log) == [first_pid, second_pid]
    poll_until(lambda: process_gone(first_pid), timeout=30)


def test_named_actor_keeps_its_name_across_a_restart(cluster, tmp_path):
    name = f"phoenix-{os.urandom(4).hex()}"
    actor = Phoenix.options(name=name, max_restarts=1).remote(str(tmp_path / "ctor.log"))
    first_pid = actorflow.get(actor.pid.remote())
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(actor.die.remote(), timeout=30)
    found = actorflow.get_actor(name)
    assert found == actor
    assert actorflow.get(found.pid.remote(), timeout=30) != first_pid
    actorflow.kill(actor)


@actorflow.remote(max_restarts=1)
class AsyncPhoenix:
    def __init__(self) -> None:
        self.ready = asyncio.Event()

    async def pid(self) -> int:
        return os.getpid()

    async def die(self) -> None:
        os._exit(2)


def test_async_actor_restarts(cluster):
    actor = AsyncPhoenix.remote()
    first_pid = actorflow.get(actor.pid.remote())
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(actor.die.remote(), timeout=30)
    assert actorflow.get(actor.pid.remote(), timeout=30) != first_pid
    with pytest.raises(exceptions.ActorDiedError, match="exited with code 2"):
        actorflow.get(actor.die.remote(), timeout=30)


# -- calls in flight --------------------------------------------------------------------------


def test_max_task_retries_retries_the_call_in_flight(cluster, tmp_path):
    actor = Phoenix.options(max_restarts=1, max_task_retries=1).remote(str(tmp_path / "c.log"))
    first_pid = actorflow.get(actor.pid.remote())
    # The process dies during the call; the call runs again on the restarted actor.
    assert actorflow.get(actor.die_once.remote(str(tmp_path / "marker")), timeout=30) != first_pid


def test_method_level_max_task_retries(cluster, tmp_path):
    actor = Phoenix.options(max_restarts=1).remote(str(tmp_path / "c.log"))
    first_pid = actorflow.get(actor.pid.remote())
    ref = actor.die_once.options(max_task_retries=1).remote(str(tmp_path / "marker"))
    assert actorflow.get(ref, timeout=30) != first_pid


def test_retries_keep_the_order_of_calls_in_flight(cluster, tmp_path):
    actor = Phoenix.options(max_restarts=1, max_task_retries=-1).remote(str(tmp_path / "c.log"))
    first_pid = actorflow.get(actor.pid.remote())
    crash = actor.die_once.remote(str(tmp_path / "marker"))
    # These are sent right behind the crashing call: whether they reached the old process or
    # not, each must run exactly once on the new one, in the order they were made.
    appends = [actor.append.remote(i) for i in range(30)]
    second_pid = actorflow.get(crash, timeout=30)
    assert second_pid != first_pid
    assert actorflow.get(appends, timeout=30) == list(range(1, 31))
    assert actorflow.get(actor.items_so_far.remote()) == list(range(30))


def test_retries_run_out(cluster, tmp_path):
    attempts = tmp_path / "attempts"
    actor = Phoenix.options(max_restarts=-1, max_task_retries=2).remote(str(tmp_path / "c.log"))
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(actor.die_always.remote(str(attempts)), timeout=30)
    assert attempts.read_text().count("attempt") == 3  # the call, then two retries
    # The actor itself is restarted and usable.
    assert actorflow.get(actor.append.remote("after"), timeout=30) == 1


@actorflow.remote(max_concurrency=2, max_restarts=1)
class ThreadedVictim:
    def __init__(self) -> None:
        self.started = threading.Event()

    def pid(self) -> int:
        return os.getpid()

    def block(self, gate) -> str:
        actorflow.get(gate.enter.remote(), timeout=30)
        return "finished"

    def die(self) -> None:
        os._exit(6)


def test_call_in_flight_without_retries_fails_with_actor_died(cluster, poll_until):
    gate = Gate.remote(free=0)
    actor = ThreadedVictim.remote()
    first_pid = actorflow.get(actor.pid.remote())
    running = actor.block.remote(gate)
    poll_until(lambda: actorflow.get(gate.count.remote()) == 1, timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(actor.die.remote(), timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(running, timeout=30)  # it was running when the process died
    assert actorflow.get(actor.pid.remote(), timeout=30) != first_pid
    actorflow.get(gate.open.remote())


# -- errors in user code are not faults -------------------------------------------------------


@actorflow.remote(max_restarts=1, max_task_retries=1)
class Raiser:
    def __init__(self) -> None:
        self.calls = 0

    def fail(self) -> None:
        self.calls += 1
        raise KeyError("user error")

    def count(self) -> tuple:
        return self.calls, os.getpid()


@pytest.mark.parametrize("max_concurrency", [1, 2], ids=["single-threaded", "threaded"])
def test_sys_exit_in_a_method_ends_the_process_and_the_actor_restarts(cluster, max_concurrency):
    """sys.exit() in a method ends the actor's process whichever thread runs the call (a pool
    thread of a threaded actor too): the call fails at once instead of never answering."""

    @actorflow.remote(max_restarts=1)
    class Quitter:
        def quit(self):
            sys.exit(3)

        def pid(self):
            return os.getpid()

    actor = Quitter.options(max_concurrency=max_concurrency).remote()
    first = actorflow.get(actor.pid.remote(), timeout=30)
    with pytest.raises(exceptions.RayActorError):
        actorflow.get(actor.quit.remote(), timeout=30)
    assert actorflow.get(actor.pid.remote(), timeout=30) != first  # restarted, new process


def test_an_exception_is_not_retried_or_restarted(cluster):
    actor = Raiser.remote()
    _, pid = actorflow.get(actor.count.remote())
    with pytest.raises(KeyError):
        actorflow.get(actor.fail.remote())
    assert actorflow.get(actor.count.remote()) == (1, pid)


def test_retry_exceptions_retries_a_user_exception(cluster):
    actor = Raiser.remote()
    with pytest.raises(KeyError):
        actorflow.get(actor.fail.options(retry_exceptions=[KeyError]).remote())
    calls, _ = actorflow.get(actor.count.remote())
    assert calls == 2  # the call and one retry (max_task_retries=1)
