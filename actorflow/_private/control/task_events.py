"""The GCS's table of task events: the ended attempts of tasks and actor calls, per job, bounded.

Owners report events in packed batches (protocol/task_events.py), and the table keeps each
batch as it came, packed: adding one costs the same whatever it holds, and a full table is a
few hundred bytes objects rather than 100,000 tuples of floats that the allocator must free one
by one and the garbage collector must step over in each full collection (under ``init()`` the
table lives in the driver, whose calls would pay for it). Events are unpacked only when they
are listed (``list tasks``, ``summary``, ``timeline``, the dashboard).

Each job keeps at most ``task_events_max_per_job`` attempts; the oldest go first when it is
full, and every event lost (dropped by an owner whose buffer was full, or evicted here) is
counted per job, so that what is listed can say what is missing. The table lives in memory
only: it is not written to the GCS's storage and starts empty after a GCS restart.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from actorflow._private.config import Config
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.task_events import (
    AddTaskEvents,
    ListTaskEvents,
    events_in,
    unpack_events,
)
from actorflow._private.runtime import Call


class _JobEvents:
    """One job's batches, oldest first; the first ``skip`` events of the oldest are evicted."""

    __slots__ = ("batches", "total", "skip")

    def __init__(self) -> None:
        self.batches: deque[tuple[bytes, int]] = deque()  # (packed batch, its event count)
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

    def add(self, job_id: str, packed: bytes, dropped: int = 0) -> None:
        """A packed batch (pack_events) of job_id's events, and how many its owner dropped."""
        count = events_in(packed)
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = _JobEvents()
        evicted = 0
        if count:
            job.batches.append((packed, count))
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
        """The job's kept events, oldest first, unpacked (lists as EVENT_FIELDS)."""
        job = self.jobs.get(job_id)
        if job is None:
            return []
        kept: list = []
        for i, (packed, _count) in enumerate(job.batches):
            batch = unpack_events(packed)
            kept += batch[job.skip :] if i == 0 else batch
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
        job_id, packed, dropped = decode(AddTaskEvents, payload)
        self.table.add(job_id, packed, dropped)

    def handle_list_events(self, payload: Any, call: Call) -> dict[str, Any]:
        return self.table.listing(decode(ListTaskEvents, payload or []).job_id)
