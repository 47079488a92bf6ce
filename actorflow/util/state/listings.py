"""The JSON of the command line's ``--format json`` and of the dashboard's ``/api/...``: one
function per view, so that ``actorflow list actors --format json`` and ``GET /api/actors``
(and every other pair) print the same rows.

``json_view(name, address, **filters)`` builds view ``name``; ``VIEWS[name].filters`` says
which filters it takes and their types (the CLI's options, the dashboard's query parameters).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from actorflow._private.cluster import inspection, task_history
from actorflow.util.state import api, logs, supervision, task_views, views

__all__ = [
    "JOB_COLUMNS",
    "LOG_COLUMNS",
    "SUPERVISOR_COLUMNS",
    "VIEWS",
    "View",
    "json_view",
    "task_rows",
]


def task_rows(
    address: str | None,
    state: str | None = None,
    name: str | None = None,
    job: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """The task attempts that match, as dicts, and how many task events were dropped."""
    rows, dropped = task_views.task_attempts(address, state=state, name=name, job=job, limit=limit)
    return [row.asdict() for row in rows], dropped


def _tasks(address: str | None, **filters: Any) -> list[dict[str, Any]]:
    return task_rows(address, **filters)[0]


def _jobs(address: str | None) -> list[dict[str, Any]]:
    return [row.asdict() for row in api.list_jobs(address, limit=2**31, detail=True)]


def _timeline(address: str | None) -> list[dict[str, Any]]:
    snapshot = inspection.run(address, inspection.collect_tasks)
    return task_history.trace_events(task_history.attempt_rows(snapshot))


def _logs(address: str | None, node: str | None = None) -> list[dict[str, Any]]:
    return logs.log_rows(address, node_id=node)


class View(NamedTuple):
    build: Callable[..., Any]  # (address, **filters) -> a JSON value
    filters: dict[str, type]  # the filters it takes, with their types
    command: str  # the command line that prints the same JSON


VIEWS: dict[str, View] = {
    "status": View(views.cluster_status, {}, "actorflow status --format json"),
    "nodes": View(views.node_rows, {}, "actorflow list nodes --format json"),
    "actors": View(views.actor_rows, {}, "actorflow list actors --format json"),
    "workers": View(views.worker_rows, {}, "actorflow list workers --format json"),
    "leases": View(views.task_lease_rows, {}, "actorflow list leases --format json"),
    "objects": View(views.object_rows, {}, "actorflow list objects --format json"),
    "object_store": View(views.object_store_stats, {}, "actorflow memory --stats --format json"),
    "jobs": View(_jobs, {}, "actorflow list jobs --format json"),
    "tasks": View(
        _tasks,
        {"state": str, "name": str, "job": str, "limit": int},
        "actorflow list tasks [--state S] [--name N] [--job J] [--limit L] --format json",
    ),
    "task_summary": View(api.summarize_tasks, {}, "actorflow summary tasks --format json"),
    "supervisors": View(
        supervision.supervisor_rows, {}, "actorflow list supervisors --format json"
    ),
    "logs": View(_logs, {"node": str}, "actorflow logs [--node ID] --format json"),
    "timeline": View(_timeline, {}, "actorflow timeline --output FILE"),
}


# -- tables of the views the command line lists (the others' are in views.py) ---------------------


def _ms_time(ms: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def _children(row: dict[str, Any]) -> str:
    running = sum(1 for c in row["children"] if c["state"] == "running")
    return f"{running}/{len(row['children'])} running"


JOB_COLUMNS: list[views.Column] = [
    ("JOB ID", lambda r: r["job_id"]),
    ("STATUS", lambda r: r["status"]),
    ("TYPE", lambda r: r["type"]),
    ("START", lambda r: _ms_time(r["start_time"])),
    ("END", lambda r: _ms_time(r["end_time"])),
    ("DRIVER", lambda r: (r.get("driver_info") or {}).get("node_ip_address", "")),
]
SUPERVISOR_COLUMNS: list[views.Column] = [
    ("SUPERVISOR", lambda r: "  " * r["depth"] + r["label"]),
    ("ACTOR ID", lambda r: r["actor_id"]),
    ("STATE", lambda r: r["state"]),
    ("STRATEGY", lambda r: r["strategy"]),
    ("CHILDREN", _children),
    ("RESTARTS", lambda r: sum(c["restarts"] for c in r["children"])),
    ("LAST EVENT", lambda r: _last_event(r)),
]
LOG_COLUMNS: list[views.Column] = [
    ("NODE ID", lambda r: r["node_id"]),
    ("FILENAME", lambda r: r["filename"]),
    ("KIND", lambda r: r["kind"]),
    ("PID", lambda r: r["pid"]),
    ("RUNNING", lambda r: "yes" if r["alive"] else "no"),
    ("SIZE", lambda r: views.format_bytes(r["size"])),
    ("MODIFIED", lambda r: time.strftime("%H:%M:%S", time.localtime(r["modified"]))),
]


def _last_event(row: dict[str, Any]) -> str:
    if not row["events"]:
        return ""
    e = row["events"][-1]
    return f"{e['kind']} {e['child']}".strip() + (f": {e['detail']}" if e["detail"] else "")


def json_view(name: str, address: str | None = None, /, **filters: Any) -> Any:
    """View ``name`` of the cluster at address, with the filters given (None: not given)."""
    view = VIEWS.get(name)
    if view is None:
        raise ValueError(f"no view {name!r}: one of {', '.join(VIEWS)}")
    unknown = set(filters) - set(view.filters)
    if unknown:
        raise ValueError(f"view {name!r} takes no filter {', '.join(sorted(unknown))}")
    return view.build(address, **{k: v for k, v in filters.items() if v is not None})
