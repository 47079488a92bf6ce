"""The owner's side of task events: one event per ended attempt, buffered, reported in batches.

The calls' hot path only stamps a few times into the call's ``trace`` (a list made with the call
record, calls.py; indexed by the ``TRACE_*`` positions below) and appends one tuple here when an
attempt ends (``ended``, on the runtime loop). The stamps live in one list rather than in
attributes of their own: a task's record already has 27 attributes, and CPython keeps an
instance's attributes inline only up to 30 keys per class, beyond which every record would get
a dict of its own (an allocation and a tracked object per call). Reports go to the GCS's
``task_events`` actor off that path: a timer on the loop sends what is buffered every
``task_events_report_seconds`` (or at once when ``task_events_batch_size`` are waiting). The
buffer is bounded: when it is full, events are dropped and counted, and the count travels with
the next report. Errors are reduced to ``[error type, message]`` when reported, not when they
happen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.config import Config
from actorflow._private.protocol.task_events import ERROR, AddTaskEvents
from actorflow._private.runtime import Runtime

logger = logging.getLogger("actorflow.task_events")

_time = time.time

# A call's trace (CallRecord.trace): [submitted, ready, pushed, started, seconds, worker
# address, worker id] of its current attempt; times are wall-clock seconds, 0.0 for a step that
# did not happen ("started" and "seconds" come from the worker's reply).
TRACE_SUBMITTED, TRACE_READY, TRACE_PUSHED, TRACE_STARTED, TRACE_SECONDS = range(5)
TRACE_WORKER_ADDRESS, TRACE_WORKER_ID = 5, 6


NO_TRACE: list = []  # the trace of a call whose events are off: never written to


def new_trace() -> list:
    """The trace of a call submitted now."""
    return [_time(), 0.0, 0.0, 0.0, 0.0, "", ""]


# Ray's ErrorType names for the errors a call ends with (the first match wins).
_ERROR_TYPES: list[tuple[type, str]] = [
    (errors.TaskCancelledError, "TASK_CANCELLED"),
    (errors.WorkerCrashedError, "WORKER_DIED"),
    (errors.ActorDiedError, "ACTOR_DIED"),
    (errors.RuntimeEnvSetupError, "RUNTIME_ENV_SETUP_FAILED"),
    (errors.TaskUnschedulableError, "TASK_UNSCHEDULABLE_ERROR"),
    (errors.ObjectLostError, "OBJECT_LOST"),
    (errors.TaskError, "TASK_EXECUTION_EXCEPTION"),
]


def error_of(error: Any) -> tuple[str, str] | None:
    """[Ray's error type, message] of what an attempt ended with: an error wire or an
    exception; None if it is a value (the attempt finished)."""
    if isinstance(error, list):
        if not serialization.is_error(error):
            return None
        try:
            error = serialization.deserialize(error)
        except Exception as exc:
            return ("TASK_EXECUTION_EXCEPTION", f"(the error could not be read: {exc})")
    if not isinstance(error, BaseException):
        return None
    kind = next((name for cls, name in _ERROR_TYPES if isinstance(error, cls)), None)
    if kind is None:
        kind = "TASK_EXECUTION_EXCEPTION"
    return (kind, str(error))


class TaskEventBuffer:
    def __init__(
        self, runtime: Runtime, config: Config, job_id: Callable[[], str], gcs_address: str
    ) -> None:
        self.runtime = runtime
        self.job_id = job_id
        self.gcs_address = gcs_address
        self.enabled = config.task_events_enabled
        self._max = config.task_events_buffer_size
        self._batch = config.task_events_batch_size
        self._every = config.task_events_report_seconds
        self._events: list = []
        self._failed: list[int] = []  # positions in _events of events that carry an error
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task] = set()
        self.dropped = 0  # since the last report
        self.dropped_total = 0

    def ended(self, call: Any, error: Any) -> None:
        """An attempt of call ended (error: None, an error wire or an exception). Loop thread."""
        events = self._events
        if len(events) >= self._max:
            self.dropped += 1
            self.dropped_total += 1
            return
        # A tuple of plain values (but a failure's error wire, until it is reported): the
        # garbage collector stops tracking it at its first collection.
        trace = call.trace
        if error is not None:
            self._failed.append(len(events))
        events.append(
            (
                call.task_id,
                call.attempt,
                call.fn_name,
                call.actor_id,
                call.parent_task_id,
                trace[0],  # TRACE_SUBMITTED ... TRACE_SECONDS, in EVENT_FIELDS' order
                trace[1],
                trace[2],
                trace[3],
                trace[4],
                _time(),
                trace[5],  # TRACE_WORKER_ADDRESS
                trace[6],  # TRACE_WORKER_ID
                error,
                call.resource_items or None,
            )
        )
        if self._timer is None:
            self._timer = self.runtime.loop.call_later(self._every, self._report)
        elif len(events) >= self._batch:
            self._timer.cancel()
            self._report()

    def _report(self) -> None:
        self._timer = None
        task = self.runtime.loop.create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        """Send what is buffered to the GCS now (loop thread); events it cannot take are
        counted as dropped."""
        events, self._events = self._events, []
        failed, self._failed = self._failed, []
        dropped, self.dropped = self.dropped, 0
        if not events and not dropped:
            return
        for i in failed:  # as plain values: the error's type and message
            event = events[i]
            events[i] = (*event[:ERROR], error_of(event[ERROR]), *event[ERROR + 1 :])
        try:
            message = AddTaskEvents(self.job_id(), events, dropped)
            await self.runtime.ask(self.gcs_address, message)
        except Exception as exc:
            if not self.runtime.closed:
                logger.debug("task events could not be reported: %s", exc)
            self.dropped += len(events) + dropped

    async def flush_all(self) -> None:
        """Report everything buffered, and wait for reports already on their way."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.gather(self.flush(), *list(self._flushing), return_exceptions=True)
