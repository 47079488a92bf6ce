"""Messages to the GCS's task-event table (actor "task_events"), and the shape of one event.

An owner (the process that submitted a call) records one event per attempt of each task and
actor call when that attempt ends, and reports them in batches (``AddTaskEvents``). An event is
a plain array, the fields in the order of ``EVENT_FIELDS``; the times are wall-clock seconds
(0.0: that step did not happen), ``error`` is ``[error type, message]`` or nil. A batch travels
packed (``pack_events``: one msgpack array of events, as bytes), and the GCS keeps it so,
unpacking only when asked: its table of up to 100,000 attempts per job is then a few hundred
bytes objects, which cost the garbage collector and the allocator nothing per event (under
``init()`` that table lives in the driver's own process).
"""

from __future__ import annotations

from typing import NamedTuple

import msgpack  # type: ignore[import-untyped]  # no stubs published

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
    events: bytes  # pack_events() of arrays as EVENT_FIELDS
    dropped: int  # events its buffer had no room for since its last report


@message("task_events", "list_events")
class ListTaskEvents(NamedTuple):
    """Answered with {"events": [[job_id, event], ...], "dropped": {job_id: count}}: the
    attempts kept (of one job, or of all with job_id ""), oldest first, and per job how many
    were dropped by owners or evicted here."""

    job_id: str = ""


def pack_events(events: list) -> bytes:
    """A batch of events (tuples or lists as EVENT_FIELDS) as one msgpack array."""
    return msgpack.packb(events, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_events(packed: bytes) -> list:
    """The events of a packed batch, as lists (bytes fields stay bytes)."""
    return msgpack.unpackb(packed, raw=False)  # type: ignore[no-any-return]


def events_in(packed: bytes) -> int:
    """How many events a packed batch holds, read from its msgpack array header (nothing is
    unpacked); a ValueError if it is not a msgpack array."""
    head = packed[0] if packed else -1
    if 0x90 <= head <= 0x9F:  # fixarray
        return head & 0x0F
    if head == 0xDC and len(packed) >= 3:  # array 16
        return int.from_bytes(packed[1:3], "big")
    if head == 0xDD and len(packed) >= 5:  # array 32
        return int.from_bytes(packed[1:5], "big")
    raise ValueError(f"a batch of task events must be a packed msgpack array, got {packed[:8]!r}")
