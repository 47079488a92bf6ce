"""Messages to the GCS's task-event table (actor "task_events"), and the shape of one event.

An owner (the process that submitted a call) records one event per attempt of each task and
actor call when that attempt ends, and reports them in batches (``AddTaskEvents``). An event is
a plain array (a tuple of plain values in memory, which the garbage collector need not track),
the fields in the order of ``EVENT_FIELDS``; the times are wall-clock seconds
(0.0: that step did not happen), ``error`` is ``[error type, message]`` or nil. The GCS keeps
each batch whole (control/task_events.py): as it came when its owner is in its own process
(init()'s embedded cluster), else packed into one msgpack bytes object.
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message

EVENT_FIELDS = (
    "task_id",  # bytes
    "attempt",  # 0 for the first attempt
    "name",  # the function's qualified name, or Class.method
    "actor_id",  # "" for a task
    "parent_task_id",  # bytes or nil: the task that submitted it
    "submitted",  # when .remote() was called
    "ready",  # when its ref arguments were all resolved (0.0: it had none)
    "pushed",  # when it was sent to a worker (after a lease) or to the actor
    "started",  # when it began running on the worker (the worker's reply says)
    "seconds",  # how long it ran there
    "ended",  # when its owner learned that the attempt ended
    "worker_address",
    "worker_id",  # the leased worker's id ("" for actor calls: the actor's worker)
    "error",  # nil if it finished, else [error type, message]
    "resources",  # its resource request (tasks) as [[name, amount], ...], or nil
)
(
    TASK_ID,
    ATTEMPT,
    NAME,
    ACTOR_ID,
    PARENT_TASK_ID,
    SUBMITTED,
    READY,
    PUSHED,
    STARTED,
    SECONDS,
    ENDED,
    WORKER_ADDRESS,
    WORKER_ID,
    ERROR,
    RESOURCES,
) = range(len(EVENT_FIELDS))


@message("task_events", "add_events")
class AddTaskEvents(NamedTuple):
    """An owner's batch of ended attempts (answered with nil)."""

    job_id: str
    events: list  # arrays as EVENT_FIELDS
    dropped: int  # events its buffer had no room for since its last report


@message("task_events", "list_events")
class ListTaskEvents(NamedTuple):
    """Answered with {"events": [[job_id, event], ...], "dropped": {job_id: count}}: the
    attempts kept (of one job, or of all with job_id ""), oldest first, and per job how many
    were dropped by owners or evicted here."""

    job_id: str = ""
