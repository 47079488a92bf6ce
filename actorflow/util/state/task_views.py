"""Tables of task attempts and their summary, for ``actorflow list tasks`` and
``actorflow summary tasks`` (the rows are ``list_tasks``' and ``summarize_tasks``')."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from actorflow.util.state.api import list_tasks
from actorflow.util.state.common import TaskState
from actorflow.util.state.views import Column, format_table

TASK_ATTEMPT_COLUMNS: list[Column] = [
    ("TASK ID", lambda r: r["task_id"]),
    ("ATTEMPT", lambda r: r["attempt_number"]),
    ("NAME", lambda r: r["name"]),
    ("STATE", lambda r: r["state"]),
    ("TYPE", lambda r: r["type"]),
    ("JOB ID", lambda r: r["job_id"]),
    ("ACTOR ID", lambda r: r["actor_id"] or ""),
    ("NODE ID", lambda r: r["node_id"]),
    ("WORKER PID", lambda r: r["worker_pid"]),
    ("ERROR TYPE", lambda r: r["error_type"] or ""),
]


def task_attempts(
    address: str | None = None,
    *,
    state: str | None = None,
    name: str | None = None,
    job: str | None = None,
    limit: int = 100,
) -> tuple[list[TaskState], int]:
    """The attempts that match (state, name and job compared without regard to case), at most
    limit, and how many task events the cluster dropped."""
    filters = [
        (key, "=", value)
        for key, value in (("state", state), ("name", name), ("job_id", job))
        if value is not None
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rows = list_tasks(address, filters=filters, limit=limit, detail=True)
    dropped = 0
    for warning in caught:
        text = str(warning.message)
        if "task event(s) were dropped" in text:
            dropped = int(text.split(" ", 1)[0])
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, 0)
    return rows, dropped


def format_task_attempts(rows: list[TaskState], dropped: int) -> str:
    lines = [format_table([row.asdict() for row in rows], TASK_ATTEMPT_COLUMNS)]
    lines.append(f"{len(rows)} task attempt(s)")
    if dropped:
        lines.append(f"{dropped} task event(s) dropped (buffers or tables full): not listed")
    return "\n".join(lines)


def _count_of(state: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row["state_counts"].get(state, 0)


def format_task_summary(summary: dict[str, Any]) -> str:
    """``summarize_tasks()`` as a table: one line per function or method, a column per state."""
    cluster = summary["cluster"]
    entries = list(cluster["summary"].values())
    states = sorted({s for e in entries for s in e["state_counts"]})
    columns: list[Column] = [
        ("FUNC_OR_CLASS_NAME", lambda r: r["func_or_class_name"]),
        ("TYPE", lambda r: r["type"]),
    ]
    columns += [(state, _count_of(state)) for state in states]
    lines = [
        f"Tasks: {cluster['total_tasks']} task(s), {cluster['total_actor_tasks']} actor "
        f"call(s), {cluster['total_actor_scheduled']} actor creation(s), by "
        f"{cluster['summary_by']}",
        format_table(entries, columns),
    ]
    if cluster.get("num_task_events_dropped"):
        lines.append(f"{cluster['num_task_events_dropped']} task event(s) dropped: not counted")
    return "\n".join(lines)
