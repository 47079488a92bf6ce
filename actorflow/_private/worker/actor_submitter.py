"""Caller side of actor calls: one ordered channel per actor, straight to the actor's worker.

Calls leave in the order they were made (a call waiting for its arguments holds back the calls
behind it, so per-caller order is kept). The actor's address comes from the GCS once; after
that the GCS is consulted only when the connection to the actor is lost: calls that never reached
the actor are simply resent to the restarted actor, calls that were running are retried within
``max_task_retries``, and everything fails with ActorDiedError (and its cause) once the actor is
dead for good.

Runs on the runtime loop only.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.config import Config
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.protocol.actors import ActorState, CreateActor, WaitActor
from actorflow._private.protocol.worker import CANCELLED, FAILED, OK, CallMethod, CancelCall
from actorflow._private.runtime import Runtime
from actorflow._private.worker.calls import STREAMING, CallOwner, CallRecord, Completion
from actorflow._private.worker.task_events import (
    TRACE_PUSHED,
    TRACE_READY,
    TRACE_SECONDS,
    TRACE_STARTED,
    TRACE_WORKER_ADDRESS,
)

logger = logging.getLogger("actorflow.actors")


@dataclass(eq=False, kw_only=True)
class ActorCall(CallRecord):
    method: str
    seq: int = 0
    failed_wire: list | None = None  # an argument failed: the call fails without running
    # An async or threaded actor (as Ray): a call whose arguments are ready leaves before
    # earlier calls still waiting for theirs.
    out_of_order: bool = False

    def __lt__(self, other: ActorCall) -> bool:
        return self.seq < other.seq


@dataclass(eq=False)
class ActorChannel:
    actor_id: str
    address: str = ""
    version: int = 0
    dead: list | None = None  # [cause, error wire] once the actor is dead for good
    queue: deque = field(default_factory=deque)
    in_flight: dict = field(default_factory=dict)
    watching: bool = False
    next_seq: int = 0
    lost: list = field(default_factory=list)  # calls lost with their worker, no retries left
    learning: bool = False  # asking the GCS what happened to the actor
    pins: list = field(default_factory=list)  # what the constructor's arguments hold
    out_of_order: bool = False  # see ActorCall.out_of_order


class ActorSubmitter:
    def __init__(
        self, runtime: Runtime, config: Config, owner: CallOwner, completion: Completion
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.owner = owner
        self.completion = completion
        self.channels: dict[str, ActorChannel] = {}
        self._calls: dict[bytes, tuple[ActorChannel, ActorCall]] = {}

    def channel(self, actor_id: str) -> ActorChannel:
        ch = self.channels.get(actor_id)
        if ch is None:
            ch = self.channels[actor_id] = ActorChannel(actor_id)
        return ch

    # -- creation -------------------------------------------------------------------------------

    def expect(self, actor_id: str, keep: list) -> ActorChannel:
        """An actor is being created (any thread): calls to it wait until the GCS has heard of
        it, and keep (what its constructor's arguments hold) lives until it is dead for good."""
        channel = self.channel(actor_id)
        channel.pins = keep
        channel.watching = True
        return channel

    def create(self, ch: ActorChannel, spec: dict[str, Any]) -> asyncio.Future:
        """Register the actor with the GCS (its arguments are resolved); the GCS's answer."""
        future = self.owner.gcs_request("actors", "create_actor", CreateActor(spec))
        ch.watching = False
        self._pump(ch)
        self.release_pins_at_death(ch)
        return future

    def creation_failed(self, ch: ActorChannel, exc: BaseException) -> None:
        self._declare_dead(ch, f"it could not be created: {exc}", None)

    def actor_collected(self, actor_id: str) -> None:
        """Every handle to the actor is gone and it is being ended: what its constructor's
        arguments hold may go with it."""
        channel = self.channels.get(actor_id)
        if channel is not None:
            channel.pins = []

    # -- submission -----------------------------------------------------------------------------

    def call_rows(self) -> list[dict[str, Any]]:
        """The actor calls made here and not finished (for inspection): "pushed" once the
        actor's address is known, else "queued"."""
        return [
            {
                "task_id": call.task_id.hex(),
                "attempt": call.attempt,
                "name": call.fn_name,
                "actor_id": ch.actor_id,
                "state": "pushed" if ch.address else "queued",
                "parent_task_id": call.parent_task_id.hex() if call.parent_task_id else "",
                "worker_id": "",
                "worker_address": ch.address,
            }
            for ch, call in list(self._calls.values())
            if not call.finished
        ]

    def submit(self, actor_id: str, call: ActorCall) -> None:
        ch = self.channel(actor_id)
        call.seq = ch.next_seq
        ch.next_seq += 1
        ch.out_of_order = ch.out_of_order or call.out_of_order
        self._calls[call.task_id] = (ch, call)
        if ch.dead is not None:
            self._finish_dead(ch, call)
            return
        ch.queue.append(call)
        # Count every slot first: a ready ref resolves synchronously inside resolve_ref.
        call.unresolved = len(call.slots)
        for slot in list(call.slots):

            def resolved(wire: list, slot: list = slot) -> None:
                self._resolved(ch, call, slot, wire)

            self.owner.resolve_ref(slot[1], resolved)
        self._pump(ch)

    def _resolved(self, ch: ActorChannel, call: ActorCall, slot: list, wire: list) -> None:
        if serialization.is_error(wire) and call.failed_wire is None:
            call.failed_wire = wire
        slot[1] = wire
        call.unresolved -= 1
        if call.unresolved == 0 and call.events:
            call.trace[TRACE_READY] = time.time()
        self._pump(ch)

    def _pump(self, ch: ActorChannel) -> None:
        queue = ch.queue
        if ch.out_of_order and queue and queue[0].unresolved:
            self._pump_ready(ch)
            return
        while queue and queue[0].unresolved == 0:
            call = queue[0]
            if call.finished:
                queue.popleft()
                continue
            if call.failed_wire is not None:
                queue.popleft()
                self._finish(call, [call.failed_wire] * len(call.return_ids))
                continue
            if not ch.address:
                break
            queue.popleft()
            self._push(ch, call)
        if ch.out_of_order and queue and queue[0].unresolved and ch.address:
            self._pump_ready(ch)
            return
        if queue and not ch.address:
            self._watch(ch)

    def _pump_ready(self, ch: ActorChannel) -> None:
        """Out of order: send every call whose arguments are ready, keep the others queued in
        their order."""
        waiting: deque = deque()
        for call in ch.queue:
            if call.finished:
                continue
            if call.unresolved:
                waiting.append(call)
            elif call.failed_wire is not None:
                self._finish(call, [call.failed_wire] * len(call.return_ids))
            elif ch.address:
                self._push(ch, call)
            else:
                waiting.append(call)
        ch.queue = waiting
        if waiting and not ch.address:
            self._watch(ch)

    def _push(self, ch: ActorChannel, call: ActorCall) -> None:
        ch.in_flight[call.task_id] = call
        address = ch.address
        if call.events:
            call.trace[TRACE_PUSHED] = time.time()
            call.trace[TRACE_WORKER_ADDRESS] = address
        message = CallMethod(
            call.task_id,
            call.method,
            call.args_wire,
            call.slots,
            call.num_returns,
            self.owner.address,
        )
        on_stream: Callable[[Any], None] | None = None
        if call.num_returns == STREAMING:

            def on_stream(item: list) -> None:
                self.completion.stream_item(call, item, address)

        future = self.runtime.ask(address, message, on_stream)
        future.add_done_callback(lambda f: self._on_reply(ch, call, address, f))

    # -- replies --------------------------------------------------------------------------------

    def _on_reply(
        self, ch: ActorChannel, call: ActorCall, address: str, future: asyncio.Future
    ) -> None:
        ch.in_flight.pop(call.task_id, None)
        exc = future.exception()
        if exc is None:
            status, payload, seconds, contained, started = future.result()
            if call.events:
                call.trace[TRACE_STARTED], call.trace[TRACE_SECONDS] = started, seconds
            if status == OK:
                self._calls.pop(call.task_id, None)
                self.completion.succeeded(call, payload, contained, address)
            elif status == FAILED:
                if self.completion.retries_on_error(call, payload):
                    call.retries_left -= 1
                    self.completion.retrying(call, payload)
                    self._requeue(ch, call)
                else:
                    self._finish(call, [payload] * len(call.return_ids))
            elif status == CANCELLED:
                self._finish_cancelled(call)
            return
        if not isinstance(exc, PeerUnreachableError):
            self._finish(call, call.errors_for_all(exc))
            return
        if ch.address == address:
            ch.address = ""  # learn the actor's new state from the GCS
        if call.cancel_requested:
            self._finish_cancelled(call)
        elif not getattr(exc, "delivered", True):
            self._requeue(ch, call)  # it never reached the actor: send it to the next one
        elif call.retries_left != 0 and call.streamed == 0:
            if call.retries_left > 0:
                call.retries_left -= 1
            self.completion.retrying(
                call,
                errors.ActorDiedError(f"the actor's process died while running {call.fn_name}()"),
            )
            self._requeue(ch, call)
        else:
            ch.lost.append(call)
            self._learn_fate(ch)
        self._pump(ch)

    def _requeue(self, ch: ActorChannel, call: ActorCall) -> None:
        """Back into the queue at its place by submission order."""
        items = list(ch.queue)
        bisect.insort(items, call)
        ch.queue = deque(items)
        self._pump(ch)

    def _finish(self, call: ActorCall, wires: list) -> None:
        self._calls.pop(call.task_id, None)
        self.completion.finish(call, wires)

    def _finish_cancelled(self, call: ActorCall) -> None:
        self._calls.pop(call.task_id, None)
        self.completion.cancelled(call, "actor call")

    # -- the actor's state ----------------------------------------------------------------------

    def release_pins_at_death(self, ch: ActorChannel, version: int = 0) -> None:
        """Let go of what the constructor's arguments hold once the actor is dead for good,
        whoever ends it (a long-poll of the GCS, only for actors that hold something)."""
        if not ch.pins or ch.dead is not None or self.runtime.closed:
            ch.pins = []
            return
        future = self.owner.gcs_request(
            "actors", "wait_actor", WaitActor(ch.actor_id, version, settled=True)
        )

        def answered(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                ch.pins = []  # the GCS is gone: so is the actor
                return
            answer = ActorState(*f.result())
            if answer.state == "DEAD":
                ch.pins = []
            else:
                self.release_pins_at_death(ch, answer.version)

        future.add_done_callback(answered)

    def _watch(self, ch: ActorChannel) -> None:
        if ch.watching or ch.dead is not None:
            return
        ch.watching = True
        future = self.owner.gcs_request("actors", "wait_actor", WaitActor(ch.actor_id, ch.version))
        future.add_done_callback(lambda f: self._state_known(ch, f))

    def _state_known(self, ch: ActorChannel, future: asyncio.Future) -> None:
        ch.watching = False
        exc = future.exception()
        if exc is not None:
            cause = f"the control store (GCS) could not be reached: {exc}"
            self._declare_dead(ch, cause, None)
            return
        version, state, address, cause, error_wire = future.result()
        ch.version = version
        self._fail_lost(ch, state, cause, error_wire)
        if state == "ALIVE":
            ch.address = address
            self._pump(ch)
        elif state == "DEAD":
            self._declare_dead(ch, cause, error_wire)
        else:
            self._watch(ch)

    def _learn_fate(self, ch: ActorChannel) -> None:
        """Calls lost with the actor's process fail as soon as the GCS records what happened
        (restarting or dead), without waiting for a restart to finish."""
        if ch.learning:
            return
        ch.learning = True
        future = self.owner.gcs_request(
            "actors", "wait_actor", WaitActor(ch.actor_id, ch.version, settled=False)
        )
        # Should the GCS not notice the death (it normally does within a second), fail anyway.
        timer = self.runtime.loop.call_later(
            self.config.actor_fate_timeout, self._fail_lost, ch, "", "", None
        )

        def known(f: asyncio.Future) -> None:
            ch.learning = False
            timer.cancel()
            if f.exception() is not None:
                self._fail_lost(ch, "", str(f.exception()), None)
                return
            _version, state, _address, cause, error_wire = f.result()
            self._fail_lost(ch, state, cause, error_wire)

        future.add_done_callback(known)

    def _fail_lost(self, ch: ActorChannel, state: str, cause: str, error_wire: list | None) -> None:
        lost, ch.lost = ch.lost, []
        for call in lost:
            if state == "DEAD":
                self._finish_dead_with(call, cause, error_wire)
                continue
            what = " (it is being restarted)" if state in ("RESTARTING", "PENDING") else ""
            error = errors.ActorDiedError(
                f"the actor's process died while running {call.fn_name}(){what}, and the call "
                f"has no retries left (max_task_retries)"
            )
            self._finish(call, call.errors_for_all(error))

    def _declare_dead(self, ch: ActorChannel, cause: str, error_wire: list | None) -> None:
        ch.dead = [cause, error_wire]
        ch.pins = []
        ch.address = ""
        while ch.queue:
            self._finish_dead(ch, ch.queue.popleft())
        for call in list(ch.in_flight.values()):
            self._finish_dead(ch, call)

    def _finish_dead_with(self, call: ActorCall, cause: str, error_wire: list | None) -> None:
        error = self._death_error(call_actor_id(self, call), cause, error_wire)
        self._finish(call, call.errors_for_all(error))

    def death_error(self, ch: ActorChannel) -> errors.ActorflowError:
        cause, error_wire = ch.dead or ["", None]
        return self._death_error(ch.actor_id, cause, error_wire)

    @staticmethod
    def _death_error(actor_id: str, cause: str, error_wire: list | None) -> errors.ActorflowError:
        original = None
        if error_wire is not None:
            try:
                original = serialization.deserialize(error_wire)
            except Exception:
                original = None
        message = f"the actor {actor_id} is dead: {cause}"
        if isinstance(original, errors.RuntimeEnvSetupError):
            return errors.RuntimeEnvSetupError(message)  # as Ray raises on its calls
        if isinstance(original, errors.TaskError):
            message += f"\n{original}"
        return errors.ActorDiedError(message, original)

    def _finish_dead(self, ch: ActorChannel, call: ActorCall) -> None:
        wire = serialization.serialize_error(self.death_error(ch))
        self._finish(call, [wire] * len(call.return_ids))

    # -- cancellation ---------------------------------------------------------------------------

    def cancel(self, task_id: bytes, force: bool) -> None:
        found = self._calls.get(task_id)
        if found is None:
            return
        ch, call = found
        call.cancel_requested = True
        if call.task_id in ch.in_flight and ch.address:
            self.runtime.tell(ch.address, CancelCall(task_id, False))
        elif not call.finished:
            if call in ch.queue:
                ch.queue.remove(call)
            self._finish_cancelled(call)


def call_actor_id(submitter: ActorSubmitter, call: ActorCall) -> str:
    found = submitter._calls.get(call.task_id)
    return found[0].actor_id if found else "?"
