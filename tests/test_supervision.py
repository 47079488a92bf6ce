"""Supervision trees (actorflow.supervision): strategies, restart types, intensity, nesting,
custom decisions, a supervisor written on actorflow.watch alone, dynamic children, backoff, and
children killed over and over. On the shared embedded cluster."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from helpers import touch, wait_for_file

import actorflow
from actorflow.supervision import (
    GAVE_UP,
    KILLED,
    NORMAL,
    Backoff,
    ChildSpec,
    ChildStartError,
    Directive,
    SupervisionEvent,
    Supervisor,
    exit_kind,
    supervisor_spec,
)
from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(120)

FAST = Backoff(initial=0.01, factor=2.0, maximum=0.05, jitter=0.5)


@actorflow.remote
class Worker:
    def __init__(self, tag: str = "") -> None:
        self.tag = tag

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> str:
        return f"pong {self.tag}".strip()

    def crash(self) -> None:
        os._exit(1)

    def leave(self) -> None:
        actorflow.actor.exit_actor()


class Broken:
    """A plain class (no decorator) whose constructor fails."""

    def __init__(self) -> None:
        raise RuntimeError("cannot start")


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def supervisors(cluster) -> Iterator[list]:
    """Supervisor handles to kill after the test (their children die with their process)."""
    started: list = []
    yield started
    for sup in started:
        actorflow.kill(sup)


def unique(prefix: str = "sup") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_until(
    sup, predicate: Callable[[list[SupervisionEvent]], bool], timeout: float = 60.0
) -> list[SupervisionEvent]:
    """The supervisor's log once predicate(log) holds (long-polls events())."""
    events: list[SupervisionEvent] = []
    deadline = time.monotonic() + timeout
    while not predicate(events):
        left = deadline - time.monotonic()
        assert left > 0, "log so far:\n" + "\n".join(map(str, events))
        after = events[-1].seq if events else 0
        events += actorflow.get(sup.events.remote(after, timeout=min(left, 5.0)), timeout=left + 10)
    return events


def count(kind: str, child: str | None = None) -> Callable[[list], int]:
    return lambda events: sum(
        1 for e in events if e.kind == kind and (child is None or e.child == child)
    )


def after_failure(events: list[SupervisionEvent], *kinds: str) -> list[tuple]:
    """(kind, child) of the events of these kinds after the first failure."""
    first = next(i for i, e in enumerate(events) if e.kind == "failed")
    return [(e.kind, e.child) for e in events[first:] if e.kind in kinds]


def children(sup) -> dict:
    return {c.name: c for c in actorflow.get(sup.which_children.remote(), timeout=30)}


def death(handle, timeout: float = 60.0) -> actorflow.ActorEvent:
    """The actor's DEAD event, once it has died."""
    events: list = []
    done = threading.Event()

    def on_event(event) -> None:
        if event.dead:
            events.append(event)
            done.set()

    actorflow.watch(handle, callback=on_event)
    assert done.wait(timeout), f"{handle} did not die within {timeout} s"
    return events[0]


def kill_process(handle) -> int:
    """SIGKILL the process of the actor (its pid as the actor reports it)."""
    pid = actorflow.get(handle.pid.remote(), timeout=30)
    os.kill(pid, signal.SIGKILL)
    return pid


def abc_specs(**kwargs) -> list[ChildSpec]:
    return [ChildSpec(n, Worker, args=(n,), **kwargs) for n in "abc"]


# -- strategies -----------------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_failed_child(supervisors):
    name = unique()
    sup = Supervisor.start(abc_specs(), name=name, backoff=FAST)
    supervisors.append(sup)
    before = children(sup)
    assert [c.state for c in before.values()] == ["running"] * 3
    assert [c.actor_name for c in before.values()] == [f"{name}.{n}" for n in "abc"]
    before["b"].handle.crash.remote()
    log_until(sup, lambda e: count("restarted", "b")(e) == 1)
    after = children(sup)
    assert after["a"].actor_id == before["a"].actor_id
    assert after["c"].actor_id == before["c"].actor_id
    assert after["b"].actor_id != before["b"].actor_id
    assert [after[n].restarts for n in "abc"] == [0, 1, 0]
    # The restarted child is reachable by its stable name and through the supervisor.
    assert actorflow.get(actorflow.get_actor(f"{name}.b").ping.remote(), timeout=30) == "pong b"
    handle = actorflow.get(sup.get_child.remote("b"), timeout=30)
    assert handle.actor_id == after["b"].actor_id


def test_one_for_all_stops_in_reverse_and_starts_in_order(supervisors):
    sup = Supervisor.start(abc_specs(), strategy="one_for_all", backoff=FAST)
    supervisors.append(sup)
    before = children(sup)
    before["b"].handle.crash.remote()
    events = log_until(sup, lambda e: count("restarted")(e) == 3)
    assert death(before["c"].handle).time <= death(before["a"].handle).time
    group = after_failure(events, "stopped", "started")
    assert group == [
        ("stopped", "c"),
        ("stopped", "a"),
        ("started", "a"),
        ("started", "b"),
        ("started", "c"),
    ]
    after = children(sup)
    assert all(after[n].actor_id != before[n].actor_id for n in "abc")
    assert [after[n].restarts for n in "abc"] == [1, 1, 1]
    assert actorflow.get([after[n].handle.ping.remote() for n in "abc"], timeout=30) == [
        "pong a",
        "pong b",
        "pong c",
    ]


def test_rest_for_one_restarts_the_failed_child_and_those_after_it(supervisors):
    sup = Supervisor.start(abc_specs(), strategy="rest_for_one", backoff=FAST)
    supervisors.append(sup)
    before = children(sup)
    before["b"].handle.crash.remote()
    events = log_until(sup, lambda e: count("restarted")(e) == 2)
    group = after_failure(events, "stopped", "started")
    assert group == [("stopped", "c"), ("started", "b"), ("started", "c")]
    after = children(sup)
    assert after["a"].actor_id == before["a"].actor_id
    assert after["b"].actor_id != before["b"].actor_id
    assert after["c"].actor_id != before["c"].actor_id
    assert [after[n].restarts for n in "abc"] == [0, 1, 1]


# -- restart types --------------------------------------------------------------------------------


def test_restart_types(supervisors):
    sup = Supervisor.start(
        [
            ChildSpec("perm", Worker),
            ChildSpec("trans", Worker, restart="transient"),
            ChildSpec("trans2", Worker, restart="transient"),
            ChildSpec("temp", Worker, restart="temporary"),
        ],
        backoff=FAST,
        intensity=10,
    )
    supervisors.append(sup)
    first = children(sup)
    # A normal exit: a permanent child is restarted, a transient one is not.
    first["perm"].handle.leave.remote()
    first["trans"].handle.leave.remote()
    events = log_until(
        sup, lambda e: count("restarted", "perm")(e) == 1 and count("exited", "trans")(e) == 1
    )
    assert count("restarted", "trans")(events) == 0
    # A crash: a transient child is restarted, a temporary one is removed.
    first["trans2"].handle.crash.remote()
    first["temp"].handle.crash.remote()
    events = log_until(
        sup, lambda e: count("restarted", "trans2")(e) == 1 and count("removed", "temp")(e) == 1
    )
    now = children(sup)
    assert set(now) == {"perm", "trans", "trans2"}
    assert (now["perm"].state, now["perm"].restarts) == ("running", 1)
    assert (now["trans"].state, now["trans"].restarts, now["trans"].handle) == ("exited", 0, None)
    assert (now["trans2"].state, now["trans2"].restarts) == ("running", 1)
    # A kill is abnormal: a transient child comes back.
    actorflow.kill(now["trans2"].handle)
    log_until(sup, lambda e: count("restarted", "trans2")(e) == 2)
    # An exited transient child can be started again by hand.
    assert actorflow.get(sup.restart_child.remote("trans"), timeout=30).state == "running"


# -- intensity ------------------------------------------------------------------------------------


def test_intensity_exceeded_kills_the_supervisor_and_its_children(supervisors):
    sup = Supervisor.start(
        [ChildSpec("w", Worker), ChildSpec("other", Worker)], intensity=2, period=60, backoff=FAST
    )
    supervisors.append(sup)
    other = children(sup)["other"].handle
    for restarts in (1, 2):
        children(sup)["w"].handle.crash.remote()
        log_until(sup, lambda e, n=restarts: count("restarted", "w")(e) == n)
    last = children(sup)["w"].handle
    last.crash.remote()
    dead = death(sup)
    assert "gave up" in dead.cause and "restart intensity exceeded" in dead.cause
    assert "more than 2 restarts within 60 s" in dead.cause
    assert exit_kind(dead) == GAVE_UP
    assert death(other).state == "DEAD"  # its children are gone too
    assert death(last).state == "DEAD"
    with pytest.raises(actorflow.exceptions.ActorError):
        actorflow.get(other.ping.remote(), timeout=30)


# -- trees ----------------------------------------------------------------------------------------


def test_nested_supervisor_gives_up_and_its_parent_restarts_it(supervisors):
    top_name = unique("tree")
    top = Supervisor.start(
        [
            ChildSpec("steady", Worker, args=("steady",)),
            supervisor_spec(
                "sub", [ChildSpec("g", Worker, args=("g",))], intensity=1, period=60, backoff=FAST
            ),
        ],
        name=top_name,
        backoff=FAST,
    )
    supervisors.append(top)
    assert list(children(top)) == ["steady", "sub"]  # its calls wait until all have started
    sub = actorflow.get_actor(f"{top_name}.sub")
    first_sub_id = sub.actor_id
    grandchild = actorflow.get_actor(f"{top_name}.sub.g")
    assert actorflow.get(grandchild.ping.remote(), timeout=30) == "pong g"
    # The grandchild fails twice: more than intensity 1, so the child supervisor gives up.
    grandchild.crash.remote()
    log_until(sub, lambda e: count("restarted", "g")(e) == 1)
    actorflow.get(sub.get_child.remote("g"), timeout=30).crash.remote()
    cause = death(sub).cause
    assert f"supervisor {top_name}.sub gave up: restart intensity exceeded" in cause
    # The top supervisor restarts it, and it starts its children again.
    log_until(top, lambda e: count("restarted", "sub")(e) == 1)
    now = children(top)
    assert now["sub"].actor_id != first_sub_id and now["sub"].restarts == 1
    assert now["steady"].restarts == 0
    new_sub = actorflow.get_actor(f"{top_name}.sub")
    assert new_sub.actor_id == now["sub"].actor_id
    grandchildren = children(new_sub)
    assert (grandchildren["g"].state, grandchildren["g"].restarts) == ("running", 0)
    regrown = actorflow.get_actor(f"{top_name}.sub.g")
    assert actorflow.get(regrown.ping.remote(), timeout=30) == "pong g"
    # Shutting the tree down stops it from the leaves up.
    actorflow.get(top.shutdown.remote(), timeout=60)
    assert exit_kind(death(regrown)) == NORMAL
    assert exit_kind(death(top)) == NORMAL


def test_a_child_that_cannot_start(supervisors):
    sup = Supervisor.start([ChildSpec("w", Worker)])
    supervisors.append(sup)
    with pytest.raises(ChildStartError, match="'broken' did not start"):
        actorflow.get(sup.start_child.remote(ChildSpec("broken", Broken)), timeout=60)
    assert set(children(sup)) == {"w"}
    # A supervisor whose initial child cannot start fails to start itself.
    failing = Supervisor.start([ChildSpec("w", Worker), ChildSpec("broken", Broken)])
    supervisors.append(failing)
    assert exit_kind(death(failing)) == "start_failed"


# -- custom supervisors ---------------------------------------------------------------------------


class Picky(Supervisor):
    """Decides by the cause: a kill stops the child, a crash of "fragile" escalates, the
    framework's own restarts are left alone (the default)."""

    def decide(self, child, event):
        if exit_kind(event) == KILLED:
            return Directive.STOP
        if child.name == "fragile":
            return Directive.ESCALATE
        return super().decide(child, event)


def test_custom_decide_hook(supervisors):
    sup = Picky.start(
        [
            ChildSpec("phoenix", Worker, options={"max_restarts": 1}),
            ChildSpec("quiet", Worker),
            ChildSpec("fragile", Worker),
        ],
        backoff=FAST,
        intensity=10,
    )
    supervisors.append(sup)
    first = children(sup)
    # RESUME: the framework restarts phoenix itself (same actor, a new process).
    old_pid = kill_process(first["phoenix"].handle)
    events = log_until(sup, lambda e: count("resumed", "phoenix")(e) == 1)
    assert any(
        e.kind == "failed" and e.child == "phoenix" and e.detail.endswith("resume") for e in events
    )
    phoenix = children(sup)["phoenix"]
    assert (phoenix.actor_id, phoenix.restarts) == (first["phoenix"].actor_id, 1)
    assert actorflow.get(phoenix.handle.pid.remote(), timeout=30) != old_pid
    # STOP: killed, so stopped and left so.
    actorflow.kill(first["quiet"].handle)
    log_until(sup, lambda e: count("stopped", "quiet")(e) == 1)
    assert children(sup)["quiet"].state == "stopped"
    # ESCALATE: the supervisor gives up, naming the child.
    first["fragile"].handle.crash.remote()
    cause = death(sup).cause
    assert "gave up: child 'fragile' failed" in cause and "escalated" in cause
    assert death(phoenix.handle).state == "DEAD"


@actorflow.remote
class Keeper:
    """A supervisor from scratch, on actorflow.watch alone: keeps one Worker running."""

    def __init__(self) -> None:
        self.restarts = 0
        self.start()

    def start(self) -> None:
        self.worker = Worker.remote("kept")
        actorflow.watch(self.worker, callback=self.on_event)

    def on_event(self, event) -> None:
        if event.state == "DEAD":
            self.restarts += 1
            self.start()

    async def current(self) -> tuple:
        return self.worker, self.restarts


def test_a_supervisor_written_on_watch_alone(supervisors, poll_until):
    keeper = Keeper.remote()
    supervisors.append(keeper)
    for round_ in (1, 2, 3):
        worker, _ = actorflow.get(keeper.current.remote(), timeout=30)
        kill_process(worker)
        poll_until(lambda n=round_: actorflow.get(keeper.current.remote())[1] == n, timeout=30)
    worker, restarts = actorflow.get(keeper.current.remote(), timeout=30)
    assert restarts == 3
    assert actorflow.get(worker.ping.remote(), timeout=30) == "pong kept"


# -- dynamic children -----------------------------------------------------------------------------


def test_dynamic_children_and_which_children(supervisors):
    name = unique()
    sup = Supervisor.start(name=name, backoff=FAST)
    supervisors.append(sup)
    assert children(sup) == {}
    spread = {"scheduling_strategy": "SPREAD", "num_cpus": 0.5}
    info = actorflow.get(
        sup.start_child.remote(ChildSpec("x", Worker, args=("x",), options=spread)), timeout=60
    )
    assert (info.name, info.state, info.restarts, info.restart) == ("x", "running", 0, "permanent")
    assert info.actor_name == f"{name}.x"
    assert actorflow.get(info.handle.ping.remote(), timeout=30) == "pong x"
    actorflow.get(sup.start_child.remote(ChildSpec("y", Worker, restart="transient")), timeout=60)
    with pytest.raises(ValueError, match="already has a child 'x'"):
        actorflow.get(sup.start_child.remote(ChildSpec("x", Worker)), timeout=30)
    assert list(children(sup)) == ["x", "y"]
    actorflow.get(sup.terminate_child.remote("x"), timeout=60)
    assert exit_kind(death(info.handle)) == NORMAL  # stopped gracefully
    stopped = children(sup)["x"]
    assert (stopped.state, stopped.handle) == ("stopped", None)
    with pytest.raises(ValueError, match="no actor named"):
        actorflow.get_actor(f"{name}.x")
    again = actorflow.get(sup.restart_child.remote("x"), timeout=60)
    assert again.state == "running" and again.actor_id != info.actor_id
    actorflow.get(sup.terminate_child.remote("x"), timeout=60)
    actorflow.get(sup.delete_child.remote("x"), timeout=30)
    assert list(children(sup)) == ["y"]
    with pytest.raises(ValueError, match="no child 'nope'"):
        actorflow.get(sup.terminate_child.remote("nope"), timeout=30)


def test_shutdown_timeout_kills_a_child_that_does_not_stop(supervisors, tmp_path):
    sup = Supervisor.start(
        [ChildSpec("stuck", Sleepy, shutdown=0.5), ChildSpec("brutal", Worker, shutdown=0)]
    )
    supervisors.append(sup)
    stuck = children(sup)["stuck"].handle
    started = str(tmp_path / "napping")
    stuck.nap.remote(120, started)  # the graceful terminate queues behind this call
    wait_for_file(started)
    actorflow.get(sup.terminate_child.remote("stuck"), timeout=60)
    assert exit_kind(death(stuck)) == KILLED
    brutal = children(sup)["brutal"].handle
    actorflow.get(sup.terminate_child.remote("brutal"), timeout=60)
    assert exit_kind(death(brutal)) == KILLED


@actorflow.remote
class Sleepy:
    def nap(self, seconds: float, started: str) -> None:
        touch(started)
        time.sleep(seconds)


# -- backoff --------------------------------------------------------------------------------------


def test_backoff_delays():
    backoff = Backoff(initial=0.1, factor=3.0, maximum=1.0, jitter=0.25)
    for failures, base in [(1, 0.1), (2, 0.3), (3, 0.9), (4, 1.0), (9, 1.0)]:
        for _ in range(20):
            assert base * 0.75 <= backoff.delay(failures) <= base
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
    with pytest.raises(ValueError):
        Backoff(jitter=2)


def test_backoff_delays_grow_between_restarts(supervisors):
    backoff = Backoff(initial=0.05, factor=2.0, maximum=10.0, jitter=0.0, reset_after=60)
    sup = Supervisor.start([ChildSpec("w", Worker)], intensity=10, period=60, backoff=backoff)
    supervisors.append(sup)
    for n in range(1, 5):
        children(sup)["w"].handle.crash.remote()
        events = log_until(sup, lambda e, n=n: count("restarted", "w")(e) == n)
    failed = [e.time for e in events if e.kind == "failed"]
    waiting = [e for e in events if e.kind == "restarting"]
    restarted = [e.time for e in events if e.kind == "restarted"]
    assert [e.detail.split(" in ")[1].split(" s")[0] for e in waiting] == [
        "0.050",
        "0.100",
        "0.200",
        "0.400",
    ]
    assert failed == sorted(failed) and restarted == sorted(restarted)
    for delay, down, up in zip([0.05, 0.1, 0.2, 0.4], failed, restarted, strict=True):
        assert up - down >= delay - 0.01  # each restart waited at least its delay


# -- chaos ----------------------------------------------------------------------------------------


def test_child_killed_20_times_is_restarted_20_times(supervisors):
    name = unique()
    sup = Supervisor.start(
        [ChildSpec("w", Worker, args=("w",)), ChildSpec("bystander", Worker)],
        name=name,
        intensity=25,
        period=600,
        backoff=FAST,
    )
    supervisors.append(sup)
    bystander = children(sup)["bystander"].actor_id
    pids = set()
    for n in range(1, 21):
        handle = actorflow.get(sup.get_child.remote("w"), timeout=30)
        pids.add(kill_process(handle))
        log_until(sup, lambda e, n=n: count("restarted", "w")(e) == n)
    assert len(pids) == 20
    now = children(sup)
    assert (now["w"].state, now["w"].restarts) == ("running", 20)
    assert now["bystander"].actor_id == bystander
    worker = actorflow.get_actor(f"{name}.w")
    assert actorflow.get(worker.ping.remote(), timeout=30) == "pong w"
    assert actorflow.get(worker.pid.remote(), timeout=30) not in pids


def test_child_killed_in_a_row_exhausts_a_low_intensity(supervisors):
    sup = Supervisor.start([ChildSpec("w", Worker)], intensity=5, period=600, backoff=FAST)
    supervisors.append(sup)
    for n in range(1, 6):
        kill_process(actorflow.get(sup.get_child.remote("w"), timeout=30))
        log_until(sup, lambda e, n=n: count("restarted", "w")(e) == n)
    last = actorflow.get(sup.get_child.remote("w"), timeout=30)
    kill_process(last)  # the 6th restart within the period is one too many
    cause = death(sup).cause
    assert "more than 5 restarts within 600 s" in cause
    assert "child 'w'" in cause


# -- across nodes ---------------------------------------------------------------------------------


def test_a_child_on_a_node_that_dies_is_restarted_on_another(local_cluster):
    head = local_cluster.add_node(num_cpus=2)
    doomed = local_cluster.add_node(num_cpus=2)
    actorflow.init(address=local_cluster.address)
    there = {"scheduling_strategy": NodeAffinitySchedulingStrategy(doomed["node_id"], soft=True)}
    sup = Supervisor.start(
        [ChildSpec("here", Where), ChildSpec("there", Where, options=there)],
        backoff=FAST,
        num_cpus=0,
    )
    first = children(sup)
    assert actorflow.get(first["there"].handle.node.remote(), timeout=60) == doomed["node_id"]
    local_cluster.kill_node(doomed)
    events = log_until(sup, lambda e: count("restarted", "there")(e) == 1)
    failure = next(e for e in events if e.kind == "failed")
    assert doomed["node_id"] in failure.detail and exit_kind(failure.detail) == "node_died"
    now = children(sup)
    assert actorflow.get(now["there"].handle.node.remote(), timeout=60) == head["node_id"]
    assert now["here"].actor_id == first["here"].actor_id


@actorflow.remote
class Where:
    def node(self) -> str:
        return actorflow.get_runtime_context().get_node_id()


# -- units ----------------------------------------------------------------------------------------


def test_exit_kinds_and_spec_checks():
    assert exit_kind("the actor exited: exit_actor() was called") == NORMAL
    assert exit_kind("the actor was terminated gracefully (__ray_terminate__)") == NORMAL
    assert exit_kind("it was killed with actorflow.kill()") == KILLED
    assert exit_kind("its worker process exited with code -9") == "crashed"
    assert exit_kind("its constructor raised an error") == "start_failed"
    assert exit_kind("supervisor top gave up: restart intensity exceeded") == GAVE_UP
    with pytest.raises(ValueError, match="restart must be"):
        ChildSpec("x", Worker, restart="sometimes")
    with pytest.raises(ValueError, match="non-empty name"):
        ChildSpec("", Worker)


def test_exit_kind_reads_rays_kill_wording():
    assert (
        exit_kind("The actor is dead because it was killed by `ray.kill` (actorflow.kill())")
        == KILLED
    )


# -- a supervisor that survives its process -------------------------------------------------------


class PidSupervisor(Supervisor):
    async def pid(self) -> int:
        return os.getpid()


@actorflow.remote
class Tally:
    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def pid(self) -> int:
        return os.getpid()


def _answers(method):
    try:
        return actorflow.get(method.remote(), timeout=30)
    except actorflow.exceptions.ActorDiedError:
        return None


def test_a_restarted_supervisor_adopts_its_live_children(supervisors, poll_until):
    """Its process dies, its max_restarts brings it back: the children it had are still the
    same processes with their state, adopted, not started again; when the supervisor dies
    for good, they die with it."""
    sup = PidSupervisor.start(
        [ChildSpec("tally", Tally), ChildSpec("w", Worker, args=("w",))],
        backoff=FAST,
        max_restarts=1,
    )
    supervisors.append(sup)
    tally = actorflow.get(sup.get_child.remote("tally"), timeout=30)
    assert actorflow.get(tally.add.remote(5), timeout=30) == 5
    before = children(sup)
    child_pid = actorflow.get(tally.pid.remote(), timeout=30)
    sup_pid = kill_process(sup)
    # Calls in flight when it died fail; the next ones wait for the restart.
    poll_until(lambda: _answers(sup.pid) not in (None, sup_pid), timeout=60)
    log_until(sup, lambda e: count("adopted")(e) == 2)
    after = children(sup)
    assert {n: c.actor_id for n, c in after.items()} == {n: c.actor_id for n, c in before.items()}
    assert [c.state for c in after.values()] == ["running", "running"]
    assert actorflow.get(tally.add.remote(1), timeout=30) == 6  # the same state
    assert actorflow.get(tally.pid.remote(), timeout=30) == child_pid
    # A child failure after the adoption is handled as before.
    after["w"].handle.crash.remote()
    log_until(sup, lambda e: count("restarted", "w")(e) == 1)

    actorflow.kill(sup)  # dead for good: its children go with it
    event = death(tally)
    assert "owner" in event.cause and sup.actor_id in event.cause


def test_a_supervisor_without_restarts_takes_its_children_along(supervisors):
    sup = PidSupervisor.start([ChildSpec("tally", Tally)], backoff=FAST)
    supervisors.append(sup)
    tally = actorflow.get(sup.get_child.remote("tally"), timeout=30)
    kill_process(sup)
    event = death(tally)
    assert "owner" in event.cause
