"""What a supervisor is told (child specs, backoff) and what it tells (child info, events)."""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field
from typing import Any

from actorflow.watching import ActorEvent

ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE = "one_for_one", "one_for_all", "rest_for_one"
STRATEGIES = (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE)

PERMANENT, TRANSIENT, TEMPORARY = "permanent", "transient", "temporary"
RESTART_TYPES = (PERMANENT, TRANSIENT, TEMPORARY)

# How an actor ended: the kind of its RESTARTING or DEAD event (exit_kind()).
NORMAL = "normal"  # exit_actor() or a graceful terminate
KILLED = "killed"  # actorflow.kill()
CRASHED = "crashed"  # its process exited or died
START_FAILED = "start_failed"  # its constructor raised
NODE_DIED = "node_died"  # its node died
OWNER_DIED = "owner_died"  # the process that created it exited
GAVE_UP = "gave_up"  # a supervisor that gave up (restart intensity, or an escalation)
OTHER = "other"


class Directive(enum.Enum):
    """What a supervisor does about a child's failure (Supervisor.decide)."""

    RESTART = "restart"  # restart it (and its siblings, as the strategy says)
    RESUME = "resume"  # leave it as it is (e.g. the framework's max_restarts restarts it)
    STOP = "stop"  # do not restart it; it stays in the list as stopped (temporary: removed)
    ESCALATE = "escalate"  # give up: stop every child and die, so the parent supervisor decides


def exit_kind(event: ActorEvent | str) -> str:
    """Why an actor went RESTARTING or DEAD: NORMAL, KILLED, CRASHED, START_FAILED, NODE_DIED,
    OWNER_DIED, GAVE_UP or OTHER (takes an ActorEvent or its cause)."""
    cause = event if isinstance(event, str) else event.cause
    if cause.startswith("supervisor ") and " gave up: " in cause:
        return GAVE_UP
    kind = "" if isinstance(event, str) else event.kind
    if kind in (NORMAL, KILLED, CRASHED, START_FAILED, NODE_DIED, OWNER_DIED):
        return kind  # the GCS's own classification; the cause text is for old events only
    if "exit_actor() was called" in cause or "terminated gracefully" in cause:
        return NORMAL
    if "killed with actorflow.kill()" in cause or "killed by `ray.kill`" in cause:
        return KILLED
    if "constructor raised" in cause:
        return START_FAILED
    if "its node " in cause:
        return NODE_DIED
    if "its owner " in cause:
        return OWNER_DIED
    if "process" in cause:
        return CRASHED
    return OTHER


@dataclass(frozen=True)
class Backoff:
    """The pause before a restart: ``initial * factor ** n`` capped at ``maximum``, n being the
    child's failures in a row (reset once it has run ``reset_after`` seconds), then shortened
    by up to ``jitter`` (a fraction) at random so that restarts do not move in lockstep."""

    initial: float = 0.05
    factor: float = 2.0
    maximum: float = 5.0
    jitter: float = 0.2
    reset_after: float = 10.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0 or self.factor < 1 or self.reset_after < 0:
            raise ValueError(
                f"invalid backoff {self}: initial, maximum, reset_after >= 0 and "
                f"factor >= 1 are needed"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter is a fraction in [0, 1], got {self.jitter}")

    def delay(self, failures: int) -> float:
        """The pause before the restart that follows `failures` failures in a row (>= 1)."""
        base = min(self.maximum, self.initial * self.factor ** max(0, failures - 1))
        return base * (1.0 - self.jitter * random.random())


@dataclass
class ChildSpec:
    """How to start one child and what to do when it ends.

    ``cls`` is an ``@actorflow.remote`` class or a plain class (a Supervisor subclass makes a
    nested supervisor, see supervisor_spec()). ``options`` are actor options (resources,
    ``scheduling_strategy``, ``max_concurrency``...); ``max_restarts`` defaults to 0 since the
    supervisor restarts. ``shutdown``: seconds a graceful stop may take before the child is
    killed (0: kill at once; None: 5 s, 30 s for a supervisor). ``start_timeout``: seconds its
    constructor may take.
    """

    name: str
    cls: Any
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    restart: str = PERMANENT
    shutdown: float | None = None
    start_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a child needs a non-empty name, got {self.name!r}")
        if self.restart not in RESTART_TYPES:
            raise ValueError(f"restart must be one of {RESTART_TYPES}, got {self.restart!r}")
        if self.shutdown is not None and self.shutdown < 0:
            raise ValueError(f"shutdown must be >= 0 seconds, got {self.shutdown}")
        self.args = tuple(self.args)


@dataclass(frozen=True)
class ChildInfo:
    """One child as which_children() shows it."""

    name: str
    restart: str  # permanent, transient or temporary
    state: str  # starting, running, restarting, stopping, stopped, exited or dead
    restarts: int  # restarts so far (by the supervisor or the framework)
    actor_id: str  # of the current (or last) incarnation; "" before the first start
    handle: Any  # its ActorHandle while it runs, else None
    actor_name: str  # the name it is registered under ("" when unnamed)


@dataclass(frozen=True)
class SupervisionEvent:
    """One entry of a supervisor's log (Supervisor.events())."""

    seq: int
    kind: str  # started, failed, restarting, restarted, stopped, removed, resumed, gave_up
    child: str  # the child's name ("" for the supervisor itself)
    supervisor: str  # the supervisor's name (or actor id)
    detail: str  # the cause, the decision, the delay...
    time: float = field(default_factory=time.time)

    def __str__(self) -> str:
        who = f"{self.supervisor}/{self.child}" if self.child else self.supervisor
        return f"[{who}] {self.kind}" + (f": {self.detail}" if self.detail else "")
