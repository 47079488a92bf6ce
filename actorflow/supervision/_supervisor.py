"""The Supervisor actor: starts children, watches them, restarts them by its strategy."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs published

import actorflow
from actorflow import exceptions
from actorflow._private.protocol.actors import KillActor
from actorflow._private.protocol.gcs import (
    ACTOR_STATE_NAMESPACE,
    SUPERVISION_NAMESPACE,
    KvDel,
    KvGet,
    KvPut,
)
from actorflow._private.worker import context
from actorflow.actor import ActorClass, ActorHandle, exit_actor
from actorflow.supervision._specs import (
    NORMAL,
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    STRATEGIES,
    TEMPORARY,
    Backoff,
    ChildInfo,
    ChildSpec,
    Directive,
    SupervisionEvent,
    exit_kind,
)
from actorflow.watching import ActorEvent

logger = logging.getLogger("actorflow.supervision")

LOG_SIZE = 1000  # events kept for events()
REPORT_EVENTS = 50  # the latest events in the report to the GCS (the dashboard's history)
REPORT_DELAY = 0.1  # seconds: changes within it go to the GCS in one report


@dataclass(eq=False)
class _Incarnation:
    """One actor started for a child; a restart makes a new one."""

    handle: Any
    alive: asyncio.Future  # the first ALIVE or DEAD event
    dead: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False  # its end is the supervisor's doing, not a failure
    started_at: float = 0.0
    restarts: int = 0  # framework restarts (max_restarts > 0)
    task: asyncio.Task | None = None


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    actor_class: ActorClass
    actor_name: str
    is_supervisor: bool
    state: str = "starting"
    restarts: int = 0
    failures: int = 0  # in a row, for the backoff
    inc: _Incarnation | None = None

    def info(self) -> ChildInfo:
        inc = self.inc
        if inc is None:
            return ChildInfo(
                self.spec.name,
                self.spec.restart,
                self.state,
                self.restarts,
                "",
                None,
                self.actor_name,
            )
        running = self.state in ("running", "restarting") and not inc.dead.is_set()
        return ChildInfo(
            self.spec.name,
            self.spec.restart,
            self.state,
            self.restarts + inc.restarts,
            inc.handle.actor_id,
            inc.handle if running else None,
            self.actor_name,
        )


def _plain_class(cls: Any) -> type:
    return cls._cls if isinstance(cls, ActorClass) else cls


class Supervisor:
    """A supervisor: start it with ``Supervisor.start(children, ...)`` (or nest it with
    supervisor_spec()); subclass it and override ``decide`` for custom decisions.

    strategy: one_for_one (restart the child that failed), one_for_all (stop all children in
    reverse start order, start them again in order) or rest_for_one (the same for the failed
    child and those started after it). More than ``intensity`` restarts within ``period``
    seconds make it give up: it stops its children and dies with a cause saying why.
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: str = ONE_FOR_ONE,
        intensity: int = 3,
        period: float = 5.0,
        backoff: Backoff | None = None,
        name: str = "",
        namespace: str | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if intensity < 0 or period <= 0:
            raise ValueError(f"need intensity >= 0 and period > 0, got {intensity}, {period}")
        specs = list(children)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique, got {names}")
        core = context.core_or_none()
        actor_id = core.extensions.get("actor_id") if core is not None else None
        if core is None or not actor_id:
            raise TypeError(
                "a Supervisor runs as an actor: use Supervisor.start(...) or supervisor_spec(...)"
            )
        self._core = core
        self._actor_id: str = actor_id
        self.strategy, self.intensity, self.period = strategy, intensity, float(period)
        self.backoff = backoff if backoff is not None else Backoff()
        self.name, self.namespace = name, namespace
        self._label = name or actor_id[:12]
        self._children: list[_Child] = []
        self._restart_times: deque[float] = deque()
        self._log: deque[SupervisionEvent] = deque(maxlen=LOG_SIZE)
        self._seq = 0
        self._done = False  # gave up or shut down: events are ignored
        self._report_handle: asyncio.TimerHandle | None = None
        # Children start in order before the constructor returns, so the supervisor is ALIVE
        # only once all of them are (as OTP's start_link); a child that cannot start fails it.
        # On the loop its methods run on: they share the tasks and asyncio objects it makes.
        loop = core.extensions["actor_loop"]()
        future = asyncio.run_coroutine_threadsafe(self._init(specs), loop)
        future.result()

    @classmethod
    def start(
        cls,
        children: Iterable[ChildSpec] = (),
        *,
        name: str | None = None,
        namespace: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Create the supervisor actor; its handle. ``kwargs``: the constructor's (strategy,
        intensity, period, backoff, and a subclass's own), then actor options (num_cpus,
        scheduling_strategy, lifetime, ...). Its calls wait until its children have started."""
        params = inspect.signature(cls.__init__).parameters
        own = {
            k: kwargs.pop(k)
            for k in list(kwargs)
            if k in params and k not in ("self", "children", "name", "namespace")
        }
        options = dict(kwargs)
        if name:
            options["name"] = name
        if namespace:
            options["namespace"] = namespace
        actor_class = actorflow.remote(cls)
        if options:
            actor_class = actor_class.options(**options)
        return actor_class.remote(list(children), name=name or "", namespace=namespace, **own)

    # -- the decision hook ----------------------------------------------------------------------

    def decide(self, child: ChildInfo, event: ActorEvent) -> Directive:
        """What to do when a child goes RESTARTING or DEAD without the supervisor asking.
        Override it (it may be ``async``); exit_kind(event) says why it ended. If it raises,
        the supervisor gives up.

        The default: leave a framework restart alone; never restart a temporary child, nor a
        transient one that exited normally; restart the rest."""
        if event.state == "RESTARTING":
            return Directive.RESUME
        if child.restart == TEMPORARY:
            return Directive.STOP
        if child.restart == "transient" and exit_kind(event) == NORMAL:
            return Directive.STOP
        return Directive.RESTART

    # -- public methods (remote) ----------------------------------------------------------------

    async def which_children(self) -> list[ChildInfo]:
        return [c.info() for c in self._children]

    async def get_child(self, name: str, timeout: float = 30.0) -> Any:
        """The handle of the child's current incarnation, waiting (up to timeout s) while it
        starts or restarts. Raises ValueError if it is not there or not running."""
        deadline = time.monotonic() + timeout
        while True:
            child = self._find(name)
            if child.state == "running" and child.inc is not None:
                return child.inc.handle
            left = deadline - time.monotonic()
            if child.state not in ("starting", "restarting", "stopping") or left <= 0:
                raise ValueError(f"child {name!r} of supervisor {self._label} is {child.state}")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def start_child(self, spec: ChildSpec) -> ChildInfo:
        """Add a child and start it (after the others); its info."""
        async with self._lock:
            if any(c.spec.name == spec.name for c in self._children):
                raise ValueError(f"supervisor {self._label} already has a child {spec.name!r}")
            child = self._make_child(spec)
            self._children.append(child)
            try:
                await self._start(child)
            except exceptions.ChildStartError:
                self._children.remove(child)
                raise
            return child.info()

    async def terminate_child(self, name: str) -> None:
        """Stop a child (gracefully, then killed after its shutdown timeout); it is not
        restarted. A temporary child is removed; others stay, stopped, for restart_child."""
        async with self._lock:
            child = self._find(name)
            await self._stop(child)
            self._retire(child, "stopped", "terminate_child()")

    async def restart_child(self, name: str) -> ChildInfo:
        """Start a stopped, exited or dead child again."""
        async with self._lock:
            child = self._find(name)
            if child.state not in ("stopped", "exited", "dead"):
                raise ValueError(f"child {name!r} is {child.state}: terminate it first")
            await self._start(child)
            return child.info()

    async def delete_child(self, name: str) -> None:
        """Forget a child that is not running."""
        async with self._lock:
            child = self._find(name)
            if child.state not in ("stopped", "exited", "dead"):
                raise ValueError(f"child {name!r} is {child.state}: terminate it first")
            self._children.remove(child)
            self._record("removed", name, "delete_child()")

    async def events(self, after: int = 0, timeout: float | None = None) -> list:
        """The log entries (SupervisionEvent) after sequence number `after`, waiting up to
        timeout seconds (None: until there is one) for the first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._seq <= after:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            try:
                await asyncio.wait_for(self._logged.wait(), left)
            except asyncio.TimeoutError:
                return []
        return [e for e in self._log if e.seq > after]

    async def shutdown(self) -> None:
        """Stop every child in reverse start order, then end this supervisor normally (as a
        graceful terminate: a parent does not restart a transient supervisor after it)."""
        async with self._lock:
            self._done = True
            await self._stop_all()
            self._record("stopped", "", "shutdown()")
        self._withdraw_report()
        host: Any = self._core.runtime.actors.get("actor")
        if host is None:
            exit_actor()
        # After this call's reply has left (ActorHost.exit tells the GCS, then ends the process).
        self._core.runtime.call_soon(
            host.exit, f"supervisor {self._label} was terminated gracefully (shutdown())"
        )

    # -- starting and stopping ------------------------------------------------------------------

    async def _init(self, specs: list[ChildSpec]) -> None:
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._logged = asyncio.Event()
        self._changed = asyncio.Event()  # set (and replaced) at every child state change
        self._main = asyncio.ensure_future(self._run())
        # After a restart of this supervisor (its own max_restarts), the children its previous
        # process started are still alive: they are adopted instead of started again.
        self._saved = await self._load_children()
        async with self._lock:  # a failure meanwhile is handled once all have started
            for spec in specs:
                child = self._make_child(spec)
                self._children.append(child)
                try:
                    await self._start(child)
                except exceptions.ChildStartError:
                    self._done = True
                    await self._stop_all()
                    raise

    def _make_child(self, spec: ChildSpec) -> _Child:
        plain = _plain_class(spec.cls)
        if not inspect.isclass(plain):
            raise TypeError(f"child {spec.name!r}: cls must be a class, got {spec.cls!r}")
        actor_class = spec.cls if isinstance(spec.cls, ActorClass) else actorflow.remote(plain)
        options = dict(spec.options)
        options.setdefault("max_restarts", 0)
        # It dies with this supervisor actor, not with its process: a restarted supervisor
        # finds it alive and adopts it.
        options.setdefault("_survive_owner_restart", True)
        if self.name and "name" not in options:
            options["name"] = f"{self.name}.{spec.name}"
            if self.namespace:
                options.setdefault("namespace", self.namespace)
        return _Child(
            spec,
            actor_class.options(**options),
            options.get("name") or "",
            issubclass(plain, Supervisor),
        )

    async def _start(self, child: _Child) -> None:
        """Create the child's actor and wait until it is ALIVE; ChildStartError if not."""
        spec = child.spec
        kwargs = dict(spec.kwargs)
        if child.is_supervisor and child.actor_name:
            kwargs.setdefault("name", child.actor_name)
            kwargs.setdefault("namespace", spec.options.get("namespace", self.namespace))
        self._set_state(child, "starting")
        saved = self._saved.pop(spec.name, None)
        if saved is not None and await self._adopt(child, *saved):
            return
        try:
            handle = child.actor_class.remote(*spec.args, **kwargs)
        except Exception as exc:
            self._set_state(child, "dead")
            raise exceptions.ChildStartError(spec.name, f"{type(exc).__name__}: {exc}") from exc
        inc = _Incarnation(handle, asyncio.get_running_loop().create_future())
        child.inc = inc
        inc.task = asyncio.ensure_future(self._watch(child, inc))
        try:
            first = await asyncio.wait_for(asyncio.shield(inc.alive), spec.start_timeout)
        except asyncio.TimeoutError:
            await self._stop(child, graceful=False)
            self._set_state(child, "dead")
            raise exceptions.ChildStartError(
                spec.name, f"not alive within {spec.start_timeout} s"
            ) from None
        if first.state != "ALIVE":
            self._set_state(child, "dead")
            raise exceptions.ChildStartError(spec.name, first.cause)
        inc.started_at = time.monotonic()
        self._set_state(child, "running")
        self._record("started", spec.name, f"actor {handle.actor_id}")
        self._save_children()

    async def _adopt(self, child: _Child, actor_id: str, meta: dict, restarts: int) -> bool:
        """Take over a child that a previous process of this supervisor started, if it is
        still alive; False if it is not (it is then started afresh)."""
        inc = _Incarnation(ActorHandle(actor_id, meta), asyncio.get_running_loop().create_future())
        child.inc = inc
        inc.task = asyncio.ensure_future(self._watch(child, inc))
        try:
            first = await asyncio.wait_for(asyncio.shield(inc.alive), child.spec.start_timeout)
        except asyncio.TimeoutError:
            first = None
        if first is None or first.state != "ALIVE":
            inc.task.cancel()
            child.inc = None
            return False
        inc.started_at = time.monotonic()
        child.restarts = restarts
        self._set_state(child, "running")
        self._record("adopted", child.spec.name, f"actor {actor_id}, alive across a restart")
        self._save_children()
        return True

    # -- what a restarted supervisor adopts ------------------------------------------------------

    async def _load_children(self) -> dict[str, list]:
        """{child name: [actor id, meta, restarts]} saved by this actor's previous process."""
        raw = await self._core.request_from_any_loop(
            self._core.gcs_address,
            "gcs",
            "kv_get",
            KvGet(ACTOR_STATE_NAMESPACE, self._actor_id.encode()),
        )
        return {} if raw is None else dict(msgpack.unpackb(raw))

    def _save_children(self) -> None:
        """Keep the running children in the GCS, under this actor's id (the GCS drops them
        when this actor is dead for good). Requests go in order: the last one wins."""
        saved = {
            c.spec.name: [c.inc.handle.actor_id, c.inc.handle._meta, c.restarts]
            for c in self._children
            if c.inc is not None and c.state == "running"
        }
        message = KvPut(ACTOR_STATE_NAMESPACE, self._actor_id.encode(), msgpack.packb(saved), True)
        core = self._core  # its methods run on the actor's loop; requests go from the runtime's
        core.runtime.call_soon(
            lambda: core.gcs_request("gcs", "kv_put", message).add_done_callback(
                self._saved_or_logged
            )
        )

    def _saved_or_logged(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.warning(
                "supervisor %s: its children could not be saved (a restart of it would start "
                "them again): %s",
                self._label,
                future.exception(),
            )

    async def _stop(self, child: _Child, graceful: bool = True) -> None:
        """End the child's current actor (if it runs) and wait until it is dead."""
        inc = child.inc
        if inc is None or inc.dead.is_set():
            return
        inc.stopping = True
        self._set_state(child, "stopping")
        timeout = child.spec.shutdown
        if timeout is None:
            timeout = 30.0 if child.is_supervisor else 5.0
        if graceful and timeout > 0 and inc.alive.done():
            try:
                if child.is_supervisor:  # so that it stops its own children first
                    inc.handle.shutdown.remote()
                else:
                    inc.handle.__actorflow_terminate__.remote()
                await asyncio.wait_for(inc.dead.wait(), timeout)
                return
            except (asyncio.TimeoutError, exceptions.ActorflowError):
                pass
        actorflow.kill(inc.handle)
        await asyncio.wait_for(inc.dead.wait(), 60)

    async def _stop_all(self) -> None:
        for child in reversed(self._children):
            try:
                await self._stop(child)
            except Exception:
                logger.exception(
                    "supervisor %s: stopping child %s failed", self._label, child.spec.name
                )
            if child.state == "stopping":
                self._set_state(child, "stopped")

    def _retire(self, child: _Child, state: str, why: str) -> None:
        """A child that is not restarted: stopped / exited, or removed if temporary."""
        if child.spec.restart == TEMPORARY:
            if child in self._children:
                self._children.remove(child)
            self._record("removed", child.spec.name, why)
        else:
            self._set_state(child, state)
            self._record(state, child.spec.name, why)

    # -- watching -------------------------------------------------------------------------------

    async def _watch(self, child: _Child, inc: _Incarnation) -> None:
        """Feed the incarnation's state changes to _on_event until it is dead."""
        unknown = 0
        while not inc.dead.is_set():
            try:
                async for event in actorflow.watch(inc.handle):
                    if (
                        event.state == "DEAD"
                        and not inc.alive.done()
                        and unknown < 100
                        and event.cause.startswith("no actor with id")
                    ):
                        unknown += 1  # asked before the GCS had registered it: ask again
                        await asyncio.sleep(0.05)
                        break
                    self._on_event(child, inc, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "supervisor %s: watching %s failed; watching again",
                    self._label,
                    child.spec.name,
                )
                await asyncio.sleep(0.5)

    def _on_event(self, child: _Child, inc: _Incarnation, event: ActorEvent) -> None:
        current = child.inc is inc and not inc.stopping and not self._done
        if event.state == "ALIVE":
            if not inc.alive.done():
                inc.alive.set_result(event)
            elif current and event.restarts > inc.restarts:
                inc.restarts = event.restarts
                self._set_state(child, "running")
                self._record("resumed", child.spec.name, "restarted by its max_restarts")
        elif event.state == "RESTARTING":
            if current and inc.alive.done():
                self._set_state(child, "restarting")
                self._queue.put_nowait((child, inc, event))
        elif event.state == "DEAD":
            started = inc.alive.done()
            if not started:
                inc.alive.set_result(event)
            inc.dead.set()
            if current and started:
                self._queue.put_nowait((child, inc, event))

    # -- failures -------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Handle the children's failures one at a time."""
        while True:
            child, inc, event = await self._queue.get()
            async with self._lock:
                if self._done or child.inc is not inc or inc.stopping:
                    continue  # a stale event: that incarnation was replaced or stopped
                try:
                    await self._on_failure(child, event)
                except Exception as exc:
                    logger.exception("supervisor %s: handling %s failed", self._label, event)
                    await self._give_up(
                        f"handling the failure of child {child.spec.name!r} "
                        f"raised {type(exc).__name__}: {exc}"
                    )

    async def _on_failure(self, child: _Child, event: ActorEvent) -> None:
        if event.state == "DEAD":
            self._set_state(child, "dead")
        directive = self.decide(child.info(), event)
        if inspect.isawaitable(directive):
            directive = await directive
        if not isinstance(directive, Directive):
            raise TypeError(f"decide() must return a Directive, got {directive!r}")
        self._record(
            "failed", child.spec.name, f"{event.state.lower()}: {event.cause} -> {directive.value}"
        )
        if directive is Directive.RESUME:
            return
        if directive is Directive.ESCALATE:
            await self._give_up(
                f"child {child.spec.name!r} failed ({event.cause}) and decide() escalated"
            )
            return
        await self._stop(child, graceful=False)  # when it is RESTARTING under max_restarts
        if directive is Directive.STOP:
            normal = event.state == "DEAD" and exit_kind(event) == NORMAL
            self._retire(child, "exited" if normal else "stopped", "not restarted")
            return
        await self._restart(child, event.cause)

    def _group(self, child: _Child) -> list[_Child]:
        """The children to restart with `child`, in start order."""
        if self.strategy == ONE_FOR_ONE:
            return [child]
        index = self._children.index(child)
        first = 0 if self.strategy == ONE_FOR_ALL else index
        return [
            c
            for i, c in enumerate(self._children)
            if c is child or (i >= first and c.state in ("running", "starting", "restarting"))
        ]

    async def _restart(self, child: _Child, cause: str) -> None:
        inc = child.inc
        ran = time.monotonic() - inc.started_at if inc is not None else 0.0
        child.failures = 1 if ran >= self.backoff.reset_after else child.failures + 1
        group = self._group(child)
        for sibling in reversed(group):
            if sibling is not child and sibling.inc is not None and not sibling.inc.dead.is_set():
                await self._stop(sibling)
                self._record("stopped", sibling.spec.name, f"{child.spec.name!r} failed")
        for sibling in [c for c in group if c is not child and c.spec.restart == TEMPORARY]:
            group.remove(sibling)
            self._retire(sibling, "stopped", f"a sibling ({child.spec.name!r}) failed")
        while True:
            if not self._count_restart():
                await self._give_up(
                    f"restart intensity exceeded: more than {self.intensity} restarts within "
                    f"{self.period:g} s (the last: child {child.spec.name!r}, {cause})"
                )
                return
            delay = self.backoff.delay(child.failures)
            for member in group:
                self._set_state(member, "restarting")
            names = ", ".join(repr(m.spec.name) for m in group)
            self._record(
                "restarting",
                child.spec.name,
                f"{names} in {delay:.3f} s (failure {child.failures} in a row)",
            )
            await asyncio.sleep(delay)
            started: list[_Child] = []
            try:
                for member in group:
                    await self._start(member)
                    started.append(member)
            except exceptions.ChildStartError as exc:
                failed = self._find(exc.child)
                failed.failures += 1
                child, cause = failed, exc.cause
                self._record("failed", exc.child, f"restart failed: {exc.cause}")
                for member in reversed(started):
                    await self._stop(member)
                continue
            for member in group:
                member.restarts += 1
                self._record(
                    "restarted",
                    member.spec.name,
                    f"restart {member.restarts}, actor {member.info().actor_id}",
                )
            self._save_children()
            return

    def _count_restart(self) -> bool:
        """Note a restart; False if that makes more than `intensity` within `period`."""
        now = time.monotonic()
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] < now - self.period:
            self._restart_times.popleft()
        return len(self._restart_times) <= self.intensity

    async def _give_up(self, reason: str) -> None:
        """Stop every child, then die with a cause that says why (the parent sees it)."""
        self._done = True
        await self._stop_all()
        cause = f"supervisor {self._label} gave up: {reason}"
        self._record("gave_up", "", cause)
        logger.error("%s", cause)
        self._report()  # now: its last state, before it dies
        await asyncio.sleep(0.05)  # so that the replies to events() callers leave first
        core = self._core
        core.runtime.call_soon(
            core.runtime.tell, core.gcs_address, KillActor(self._actor_id, True, cause)
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def _find(self, name: str) -> _Child:
        for child in self._children:
            if child.spec.name == name:
                return child
        raise ValueError(f"supervisor {self._label} has no child {name!r}")

    def _set_state(self, child: _Child, state: str) -> None:
        child.state = state
        self._changed.set()
        self._changed = asyncio.Event()
        self._report_soon()

    def _record(self, kind: str, child: str, detail: str) -> None:
        self._seq += 1
        event = SupervisionEvent(self._seq, kind, child, self._label, detail)
        self._log.append(event)
        logger.info("%s", event)
        self._logged.set()
        self._logged = asyncio.Event()
        self._report_soon()

    # -- the report in the GCS (the dashboard, `actorflow list supervisors`) ---------------------

    def _report_soon(self) -> None:
        if self._report_handle is None:
            loop = asyncio.get_running_loop()
            self._report_handle = loop.call_later(REPORT_DELAY, self._report)

    def _report(self) -> None:
        if self._report_handle is not None:
            self._report_handle.cancel()
            self._report_handle = None
        core = self._core
        value = json.dumps(self._report_value()).encode()
        key = self._actor_id.encode()
        message = KvPut(SUPERVISION_NAMESPACE, key, value, True)
        core.runtime.call_soon(core.runtime.tell, core.gcs_address, message)

    def _withdraw_report(self) -> None:
        if self._report_handle is not None:
            self._report_handle.cancel()
            self._report_handle = None
        core = self._core
        message = KvDel(SUPERVISION_NAMESPACE, self._actor_id.encode())
        core.runtime.call_soon(core.runtime.tell, core.gcs_address, message)

    def _report_value(self) -> dict[str, Any]:
        children = []
        for child in self._children:
            info = child.info()
            children.append(
                {
                    "name": info.name,
                    "restart": info.restart,
                    "state": info.state,
                    "restarts": info.restarts,
                    "actor_id": info.actor_id,
                    "actor_name": info.actor_name,
                    "is_supervisor": child.is_supervisor,
                }
            )
        events = list(self._log)[-REPORT_EVENTS:]
        return {
            "actor_id": self._actor_id,
            "name": self.name,
            "label": self._label,
            "namespace": self.namespace or "",
            "strategy": self.strategy,
            "intensity": self.intensity,
            "period": self.period,
            "gave_up": self._done,
            "updated": time.time(),
            "children": children,
            "events": [
                {"seq": e.seq, "time": e.time, "kind": e.kind, "child": e.child, "detail": e.detail}
                for e in events
            ],
        }


def supervisor_spec(
    name: str,
    children: Iterable[ChildSpec] = (),
    *,
    cls: type[Supervisor] = Supervisor,
    restart: str = "permanent",
    shutdown: float | None = None,
    options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ChildSpec:
    """A ChildSpec for a nested supervisor. ``kwargs``: strategy, intensity, period, backoff."""
    return ChildSpec(
        name,
        cls,
        kwargs={"children": list(children), **kwargs},
        options=dict(options or {}),
        restart=restart,
        shutdown=shutdown,
    )
