"""What tasks and actor calls share: the call record, and how a call ends.

A call is submitted with its arguments serialised once (top-level refs as slots resolved before
it is sent), pins what its arguments hold until it is done, and ends in one of three ways: its
results arrive (with the refs and handles they hold), it fails (retried if its options say so) or
it is cancelled. The task submitter and the actor submitter differ in where they send a call and
how they recover from a lost worker; the rest is here, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from actorflow._private import errors, ids, serialization
from actorflow._private.ownership.state import Ownership
from actorflow._private.worker.streams import StreamTable
from actorflow._private.worker.task_events import (
    NO_TRACE,
    TRACE_SECONDS,
    TRACE_STARTED,
    TaskEventBuffer,
    new_trace,
)

STREAMING = -1  # num_returns of a streaming generator


class CallOwner(Protocol):
    """What the submitters need of the process that owns their calls (the core worker)."""

    job_id: str
    # The job as raylets need it to start its workers, sent with lease requests.
    job_info: dict[str, Any] | None
    raylet_address: str

    @property
    def address(self) -> str: ...

    def resolve_ref(self, ref: Any, callback: Callable[[list], None]) -> None: ...

    def watch_node_deaths(self) -> None: ...

    def gcs_request(self, target: str, method: str, payload: Any) -> asyncio.Future: ...


# Slotted, and with shared defaults: a million queued calls are a million of these, so each
# field is 8 bytes in the record and no call allocates what it leaves empty.
@dataclass(eq=False, kw_only=True, slots=True)
class CallRecord:
    task_id: bytes
    fn_name: str
    args_wire: list
    slots: list  # [[position or keyword, ObjectRef or wire], ...]
    num_returns: int
    retries_left: int
    retry_exceptions: Any  # bool or tuple of exception types
    parent_task_id: bytes | None = None
    unresolved: int = 0
    cancel_requested: bool = False
    streamed: int = 0  # items a streaming call has yielded so far
    pinned: Sequence = ()  # refs and handles its arguments hold
    pin_ids: Sequence = ()  # owned objects counted as pinned by it
    finished: bool = False
    actor_id: str = ""  # the actor called ("" for a task)
    events: bool = True  # record task events for it (enable_task_events, Config)
    # A task's resource request as sorted (name, amount) pairs, for its task events: plain
    # values (no dict), so its event is not tracked by the garbage collector. () for actor calls.
    resource_items: tuple = ()

    attempt: int = 0  # its current attempt (set by a retry)

    return_ids: list[bytes] = field(init=False)
    # Its current attempt's times and worker, for its task events (task_events.new_trace).
    # NO_TRACE (empty: never written to) when its events are off.
    trace: list = field(init=False)

    def __post_init__(self) -> None:  # computed once: it is read several times per call
        self.trace = new_trace() if self.events else NO_TRACE
        if self.num_returns == STREAMING:
            self.return_ids = [ids.object_id(self.task_id, 0)]
        else:
            self.return_ids = [ids.object_id(self.task_id, i + 1) for i in range(self.num_returns)]

    def errors_for_all(self, error: BaseException) -> list:
        """One error wire per result."""
        return [serialization.serialize_error(error)] * len(self.return_ids)


def retry_exceptions_option(value: Any) -> Any:
    """retry_exceptions as the records keep it: a bool or a tuple of exception types."""
    return tuple(value) if isinstance(value, list) else value


class Completion:
    """Ends calls: stores their results (or errors) and lets go of what they held."""

    def __init__(
        self,
        ownership: Ownership,
        streams: StreamTable,
        set_object: Callable[[bytes, list], None],
        hold_contained: Callable[[list, list, str, bytes], None],
        results_failed: Callable[[list, list], None],
        events: TaskEventBuffer,
    ) -> None:
        self.events = events
        self._ownership = ownership
        self._streams = streams
        self._set_object = set_object
        self._hold_contained = hold_contained
        self._results_failed = results_failed
        # (function or method name, "FINISHED" or "FAILED") -> calls ended since the last
        # metrics report (worker/metrics.py takes it): one dict addition per call.
        self.done: dict[tuple[str, str], int] = {}

    def succeeded(self, call: CallRecord, wires: list, contained: list, sender: str) -> None:
        """The results arrived, holding contained (refs and handles sent by sender). What they
        hold is taken even for a late reply, so that the sender hears it may let go."""
        if contained:
            self._hold_contained(call.return_ids, contained, sender, call.task_id)
        self.finish(call, wires, succeeded=True)

    def finish(self, call: CallRecord, wires: list, succeeded: bool = False) -> None:
        """Store the call's results, once: a late reply after a retry, or a cancellation that
        raced the reply, finds the call finished. Results that succeeded are values, never all
        errors: they skip results_failed's check (a generator per call on the loop thread)."""
        if call.finished:
            return
        call.finished = True
        if call.events:
            self.events.ended(call, None if succeeded else (wires[0] if wires else None))
        call.pinned = ()  # the refs and handles its arguments held may go now
        if call.pin_ids:
            # Emptied first: a call may be finished twice (a late reply after a retry).
            pin_ids, call.pin_ids = call.pin_ids, ()
            self._ownership.unpin_for_call(pin_ids)
        if not succeeded:
            self._results_failed(call.return_ids, wires)
        failed = not succeeded and bool(wires) and serialization.is_error(wires[0])
        key = (call.fn_name, "FAILED" if failed else "FINISHED")
        self.done[key] = self.done.get(key, 0) + 1
        if call.num_returns == STREAMING:
            self._streams.finish(call.task_id, wires[0] if wires else None)
        else:
            for obj_id, wire in zip(call.return_ids, wires, strict=False):
                if call.actor_id and wire[0] == serialization.SHARED:
                    self._ownership.lineage.mark(obj_id, "ACTOR_TASK")  # never made again
                self._set_object(obj_id, wire)

    def retrying(self, call: CallRecord, error: Any) -> None:
        """The attempt failed (error: its wire or exception) and the call is tried again."""
        if call.events:
            self.events.ended(call, error)
            call.trace[TRACE_STARTED] = call.trace[TRACE_SECONDS] = 0.0
        call.attempt += 1

    def cancelled(self, call: CallRecord, kind: str) -> None:
        error = errors.TaskCancelledError(
            call.task_id.hex(), f"{kind} {call.fn_name}() was cancelled"
        )
        self.finish(call, call.errors_for_all(error))

    def stream_item(self, call: CallRecord, item: list, sender: str) -> None:
        """A streaming call yielded item [index, wire, contained]."""
        index, wire, contained = item
        call.streamed = max(call.streamed, index + 1)
        self._hold_contained(
            [ids.object_id(call.task_id, index + 1)], contained, sender, call.task_id
        )
        self._streams.item(call.task_id, index, wire)

    @staticmethod
    def retries_on_error(call: CallRecord, error_wire: list) -> bool:
        """Does this application error get the call retried (retry_exceptions, retries left)?"""
        if call.retries_left == 0 or not call.retry_exceptions or call.cancel_requested:
            return False
        if call.retry_exceptions is True:
            return True
        try:
            err = serialization.deserialize(error_wire)
        except Exception:
            return False
        return isinstance(getattr(err, "cause", err), call.retry_exceptions)
