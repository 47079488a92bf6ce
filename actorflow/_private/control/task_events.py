"""The GCS's table of task events: the ended attempts of tasks and actor calls, per job, bounded.

Owners report events in batches (protocol/task_events.py), and the table keeps each batch
whole, evicting whole batches: adding one costs the same whatever it holds. A batch from an
owner in this process (init()'s embedded cluster, where the table lives in the driver, whose
calls would pay for it) is kept as the tuple of tuples it is: the garbage collector stops
tracking it, so that a full table is not 100,000 objects for each full collection to step
over. A batch off the wire (lists) is packed into one msgpack bytes object, which neither the
collector nor the allocator sees per event; it is unpacked only when the events are listed
(``list tasks``, ``summary``, ``timeline``, the dashboard).

Each job keeps at most ``task_events_max_per_job`` attempts; the oldest go first when it is
full, and every event lost (dropped by an owner whose buffer was full, or evicted here) is
counted per job, so that what is listed can say what is missing. The table lives in memory
only: it is not written to the GCS's storage and starts empty after a GCS restart.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs published

from actorflow._private.config import Config
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.task_events import AddTaskEvents, ListTaskEvents
from actorflow._private.runtime import Call


class _JobEvents:
    """One job's batches, oldest first; the first ``skip`` events of the oldest are evicted."""

    __slots__ = ("batches", "total", "skip")

    def __init__(self) -> None:
        # (batch, its event count); a batch is a tuple of event tuples or packed (bytes)
        self.batches: deque[tuple[tuple | bytes, int]] = deque()
        self.total = 0  # events in the batches, evicted ones included
        self.skip = 0

    def __len__(self) -> int:
        return self.total - self.skip


class TaskEventTable:
    """Sans-IO: the bounded per-job tables."""

    def __init__(self, max_per_job: int) -> None:
        self.max_per_job = max(1, max_per_job)
        self.jobs: dict[str, _JobEvents] = {}
        self.dropped: dict[str, int] = {}

    def add(self, job_id: str, events: list, dropped: int = 0) -> None:
        """A batch of job_id's events (tuples from this process, or lists off the wire), and
        how many its owner dropped."""
        count = len(events)
        batch: tuple | bytes = ()
        if count:
            if type(events[0]) is tuple:
                batch = tuple(events)
            else:
                batch = msgpack.packb(events, use_bin_type=True)
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = _JobEvents()
        evicted = 0
        if count:
            job.batches.append((batch, count))
            job.total += count
            evicted = max(0, len(job) - self.max_per_job)
            if evicted:
                job.skip += evicted
                batches = job.batches
                while job.skip >= batches[0][1]:  # whole batches evicted: let them go
                    n = batches.popleft()[1]
                    job.skip -= n
                    job.total -= n
        if dropped or evicted:
            self.dropped[job_id] = self.dropped.get(job_id, 0) + dropped + evicted

    def events(self, job_id: str) -> list:
        """The job's kept events, oldest first (tuples or lists as EVENT_FIELDS)."""
        job = self.jobs.get(job_id)
        if job is None:
            return []
        kept: list = []
        for i, (batch, _count) in enumerate(job.batches):
            events = msgpack.unpackb(batch, raw=False) if type(batch) is bytes else batch
            kept += events[job.skip :] if i == 0 else events
        return kept

    def listing(self, job_id: str = "") -> dict[str, Any]:
        jobs = [job_id] if job_id else list(self.jobs)
        return {
            "events": [[job, event] for job in jobs for event in self.events(job)],
            "dropped": {job: n for job, n in self.dropped.items() if not job_id or job == job_id},
        }


class TaskEvents:
    """The ``task_events`` actor of the GCS."""

    def __init__(self, config: Config) -> None:
        self.table = TaskEventTable(config.task_events_max_per_job)

    def handle_add_events(self, payload: list, call: Call | None) -> None:
        job_id, events, dropped = decode(AddTaskEvents, payload)
        self.table.add(job_id, events, dropped)

    def handle_list_events(self, payload: Any, call: Call) -> dict[str, Any]:
        return self.table.listing(decode(ListTaskEvents, payload or []).job_id)
