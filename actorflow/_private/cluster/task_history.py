"""Task attempts as rows, from what the cluster said (``inspection.TaskSnapshot``): the ended
attempts of the GCS's task events, and the unfinished ones their owners and workers know of now;
and the same attempts as a Chrome trace (``actorflow timeline``). Pure functions.

Rows carry Ray's ``TaskState`` field names (``util/state/common.py``); states are Ray's:
PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, RUNNING, FINISHED, FAILED.
"""

from __future__ import annotations

from typing import Any

from actorflow._private.cluster.inspection import TaskSnapshot
from actorflow._private.protocol import task_events as ev

LIVE_STATES = {
    "resolving": "PENDING_ARGS_AVAIL",
    "queued": "PENDING_NODE_ASSIGNMENT",
    "pushed": "SUBMITTED_TO_WORKER",
    "running": "RUNNING",
}


def _ms(seconds: float) -> int | None:
    return int(seconds * 1000) if seconds else None


def _hex(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else (value or "")


def _row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task_id": "",
        "attempt_number": 0,
        "name": "",
        "state": "",
        "job_id": "",
        "actor_id": None,
        "type": "NORMAL_TASK",
        "func_or_class_name": "",
        "parent_task_id": "",
        "node_id": None,
        "worker_id": None,
        "worker_pid": None,
        "error_type": None,
        "language": "PYTHON",
        "required_resources": None,
        "events": None,
        "creation_time_ms": None,
        "start_time_ms": None,
        "end_time_ms": None,
        "error_message": None,
        "worker_address": "",
    }
    row.update(fields)
    return row


def _workers(snapshot: TaskSnapshot) -> dict[str, tuple[str, dict[str, Any]]]:
    """worker address -> (node id, its raylet's row of it), for the live workers."""
    return {
        w["address"]: (node_id, w)
        for node_id, info in snapshot.view.node_infos.items()
        for w in info.get("workers", [])
        if w.get("address")
    }


def _place(row: dict[str, Any], where: dict[str, tuple[str, dict[str, Any]]]) -> None:
    node_id, worker = where.get(row["worker_address"], ("", {}))
    row["node_id"] = node_id or row["node_id"]
    row["worker_id"] = worker.get("worker_id") or row["worker_id"] or None
    row["worker_pid"] = worker.get("pid") or row["worker_pid"]


def _ended_row(job_id: str, e: list, actors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    error = e[ev.ERROR]
    started, seconds = e[ev.STARTED], e[ev.SECONDS]
    end = started + seconds if started else e[ev.ENDED]
    actor_id = e[ev.ACTOR_ID] or None
    steps = [("PENDING_ARGS_AVAIL", e[ev.SUBMITTED])]
    steps += [("PENDING_NODE_ASSIGNMENT", e[ev.READY] or e[ev.SUBMITTED])]
    steps += [("SUBMITTED_TO_WORKER", e[ev.PUSHED]), ("RUNNING", started)]
    steps += [("FAILED" if error else "FINISHED", end)]
    row = _row(
        task_id=_hex(e[ev.TASK_ID]),
        attempt_number=e[ev.ATTEMPT],
        name=e[ev.NAME],
        state="FAILED" if error else "FINISHED",
        job_id=job_id,
        actor_id=actor_id,
        type="ACTOR_TASK" if actor_id else "NORMAL_TASK",
        func_or_class_name=e[ev.NAME],
        parent_task_id=_hex(e[ev.PARENT_TASK_ID]),
        worker_id=e[ev.WORKER_ID] or None,
        error_type=error[0] if error else None,
        error_message=error[1] if error else None,
        required_resources=dict(e[ev.RESOURCES]) if e[ev.RESOURCES] else None,
        events=[{"state": s, "created_ms": _ms(t)} for s, t in steps if t],
        creation_time_ms=_ms(e[ev.SUBMITTED]),
        start_time_ms=_ms(started),
        end_time_ms=_ms(end),
        worker_address=e[ev.WORKER_ADDRESS],
    )
    actor = actors.get(actor_id or "")
    if actor is not None and actor.get("address") == row["worker_address"]:
        # The GCS knows where the actor runs (its node, its worker), if it ran the call there.
        row["node_id"] = actor.get("node_id") or None
        row["worker_id"] = actor.get("worker_id") or None
    row["_started"], row["_seconds"] = started, seconds
    return row


def attempt_rows(snapshot: TaskSnapshot) -> list[dict[str, Any]]:
    """One row per attempt: the ended ones (oldest first), then those not ended yet."""
    where = _workers(snapshot)
    view = snapshot.view
    actors = {a["actor_id"]: a for a in view.actors}
    hosts = {a["address"]: a["actor_id"] for a in view.actors if a.get("address")}
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for job_id, event in snapshot.events:
        row = _ended_row(job_id, event, actors)
        _place(row, where)
        rows[(row["task_id"], row["attempt_number"])] = row
    live: dict[str, dict[str, Any]] = {}
    for owner, submitted in snapshot.submitted.items():
        job_id = snapshot.drivers.get(owner) or where.get(owner, ("", {}))[1].get("job_id", "")
        for t in submitted:
            key = (t["task_id"], t.get("attempt", 0))
            if key in rows:
                continue  # it ended meanwhile: its event says how
            row = _row(
                task_id=t["task_id"],
                attempt_number=key[1],
                name=t["name"],
                state=LIVE_STATES.get(t["state"], "PENDING_NODE_ASSIGNMENT"),
                job_id=job_id or "",
                actor_id=t["actor_id"] or None,
                type="ACTOR_TASK" if t["actor_id"] else "NORMAL_TASK",
                func_or_class_name=t["name"],
                parent_task_id=t["parent_task_id"],
                worker_id=t["worker_id"] or None,
            )
            if t["worker_address"] and row["state"] == "SUBMITTED_TO_WORKER":
                row["worker_address"] = t["worker_address"]
                _place(row, where)
            live[t["task_id"]] = row
    ended = {task_id for task_id, _attempt in rows}
    for address, running in snapshot.running.items():
        _, worker = where.get(address, ("", {}))
        for t in running:
            found = live.get(t["task_id"])
            if found is not None:
                row = found
            else:
                if t["task_id"] in ended:
                    continue  # its owner has seen it end
                # Not among its owner's: the owner did not answer, or it is an actor's
                # constructor.
                row = live[t["task_id"]] = _unowned(t, worker, hosts.get(address))
            if t["state"] == "running":
                row["state"] = "RUNNING"
            elif not row["state"]:
                row["state"] = "SUBMITTED_TO_WORKER"
            row["worker_address"] = address
            _place(row, where)
    return list(rows.values()) + list(live.values())


def _unowned(t: dict[str, Any], worker: dict[str, Any], actor_id: str | None) -> dict[str, Any]:
    creating = t["name"].endswith(".__init__")
    kind = "ACTOR_CREATION_TASK" if creating else "ACTOR_TASK" if actor_id else "NORMAL_TASK"
    return _row(
        task_id=t["task_id"],
        name=t["name"],
        job_id=worker.get("job_id", "") or "",
        actor_id=actor_id,
        type=kind,
        func_or_class_name=t["name"],
    )


# -- the timeline --------------------------------------------------------------------------------


def trace_events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attempts that ran, as Chrome trace events (the Trace Event Format that
    chrome://tracing and Perfetto open): a complete ("X") event each, on the row (pid) of its
    node and the line (tid) of its worker, with metadata events naming them."""
    events: list[dict[str, Any]] = []
    named: set[tuple[str, str]] = set()
    for row in rows:
        started = row.get("_started") or 0.0
        if not started:
            continue  # it never ran (or has not ended)
        node = f"node:{row['node_id'] or '?'}"
        worker = f"worker:{row['worker_id'] or row['worker_address'] or '?'}"
        if (node, "") not in named:
            named.add((node, ""))
            events.append(_meta("process_name", node, "", f"Node {row['node_id'] or '?'}"))
        if (node, worker) not in named:
            named.add((node, worker))
            pid = row["worker_pid"]
            label = f"Worker {row['worker_id'] or row['worker_address']}" + (
                f" (pid {pid})" if pid else ""
            )
            events.append(_meta("thread_name", node, worker, label))
        events.append(
            {
                "cat": "actor_task" if row["actor_id"] else "task",
                "name": row["name"],
                "pid": node,
                "tid": worker,
                "ph": "X",
                "ts": started * 1e6,
                "dur": max(row.get("_seconds") or 0.0, 0.0) * 1e6,
                "cname": "rail_response" if row["state"] == "FAILED" else "rail_animation",
                "args": {
                    "task_id": row["task_id"],
                    "attempt_number": row["attempt_number"],
                    "state": row["state"],
                    "job_id": row["job_id"],
                    "actor_id": row["actor_id"],
                    "worker_pid": row["worker_pid"],
                    "error_type": row["error_type"],
                },
            }
        )
    return events


def _meta(kind: str, pid: str, tid: str, name: str) -> dict[str, Any]:
    event: dict[str, Any] = {"name": kind, "ph": "M", "pid": pid, "args": {"name": name}}
    if tid:
        event["tid"] = tid
    return event
