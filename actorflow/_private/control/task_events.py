"""The GCS's table of task events: the ended attempts of tasks and actor calls, per job, bounded.

Owners report events in batches (protocol/task_events.py). Each job keeps at most
``task_events_max_per_job`` attempts; the oldest go first when it is full, and every event lost
(dropped by an owner whose buffer was full, or evicted here) is counted per job, so that what is
listed can say what is missing. The table lives in memory only: it is not written to the GCS's
storage and starts empty after a GCS restart.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from actorflow._private.config import Config
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.task_events import (
    ERROR,
    RESOURCES,
    AddTaskEvents,
    ListTaskEvents,
)
from actorflow._private.runtime import Call


class TaskEventTable:
    """Sans-IO: the bounded per-job tables."""

    def __init__(self, max_per_job: int) -> None:
        self.max_per_job = max(1, max_per_job)
        self.jobs: dict[str, deque] = {}
        self.dropped: dict[str, int] = {}

    def add(self, job_id: str, events: list, dropped: int = 0) -> None:
        table = self.jobs.get(job_id)
        if table is None:
            table = self.jobs[job_id] = deque(maxlen=self.max_per_job)
        evicted = max(0, len(table) + len(events) - self.max_per_job)
        if dropped or evicted:
            self.dropped[job_id] = self.dropped.get(job_id, 0) + dropped + evicted
        table.extend(event if type(event) is tuple else _frozen(event) for event in events)

    def listing(self, job_id: str = "") -> dict[str, Any]:
        jobs = [job_id] if job_id else list(self.jobs)
        return {
            "events": [[job, event] for job in jobs for event in self.jobs.get(job, ())],
            "dropped": {job: n for job, n in self.dropped.items() if not job_id or job == job_id},
        }


def _frozen(event: list) -> tuple:
    """An event off the wire (arrays are lists) as tuples of plain values, which the garbage
    collector stops tracking: a full table costs it no time."""
    error, resources = event[ERROR], event[RESOURCES]
    return (
        *event[:ERROR],
        tuple(error) if error else None,
        tuple(map(tuple, resources)) if resources else None,
    )


class TaskEvents:
    """The ``task_events`` actor of the GCS."""

    def __init__(self, config: Config) -> None:
        self.table = TaskEventTable(config.task_events_max_per_job)

    def handle_add_events(self, payload: list, call: Call | None) -> None:
        job_id, events, dropped = decode(AddTaskEvents, payload)
        self.table.add(job_id, events, dropped)

    def handle_list_events(self, payload: Any, call: Call) -> dict[str, Any]:
        return self.table.listing(decode(ListTaskEvents, payload or []).job_id)
