"""Finding and reading log files anywhere in the cluster: each node's log service
(node/logs.py) lists and serves the logs of the processes it started; this module asks the GCS
where a node, an actor or a task is, then asks that node. Used by ``util.state.list_logs`` /
``get_log``, ``actorflow logs`` and the dashboard (through ``inspection.run``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from actorflow._private import errors
from actorflow._private.cluster import inspection, task_history
from actorflow._private.protocol.logs import ListLogs, ReadLog


@dataclass(frozen=True)
class LogFile:
    """One log file: the node that serves it, that node's address, its name there."""

    node_id: str
    node_address: str
    filename: str


async def _live_nodes(ask: inspection.Ask, gcs_address: str) -> list[dict[str, Any]]:
    nodes = await inspection._ask_gcs(ask, gcs_address, "get_nodes")
    return sorted(
        (n for n in nodes if n.get("alive", True)),
        key=lambda n: (not n.get("is_head"), n["node_id"]),
    )


def _pick_node(nodes: list[dict[str, Any]], node_id: str | None) -> list[dict[str, Any]]:
    if not node_id:
        return nodes
    chosen = [n for n in nodes if n["node_id"] == node_id or n["node_id"].startswith(node_id)]
    if len(chosen) != 1:
        known = ", ".join(n["node_id"] for n in nodes) or "none"
        what = "matches several" if chosen else "is not a live node"
        raise ValueError(f"node {node_id!r} {what} (live nodes: {known})")
    return chosen


async def list_logs(
    ask: inspection.Ask, gcs_address: str, node_id: str | None = None, glob: str = ""
) -> list[dict[str, Any]]:
    """One row per log file on the live nodes (or the one node_id names): node_id and the
    node's row (filename, kind, worker_id, pid, alive, size, modified); a node that does not
    answer is left out."""
    nodes = _pick_node(await _live_nodes(ask, gcs_address), node_id)
    answers = await asyncio.gather(
        *[_ask_logs(ask, n["address"], ListLogs(glob)) for n in nodes], return_exceptions=True
    )
    rows = []
    for node, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, BaseException):
            continue
        rows += [{"node_id": node["node_id"], **row} for row in answer]
    return rows


async def _ask_logs(ask: inspection.Ask, address: str, message: Any) -> Any:
    method = "list_logs" if isinstance(message, ListLogs) else "read_log"
    return await ask(address, "logs", method, list(message))


def _match_actor(actors: list[dict[str, Any]], actor: str) -> dict[str, Any]:
    by_id = [a for a in actors if a["actor_id"] == actor]
    by_name = [a for a in actors if a.get("name") == actor]
    found = by_id or by_name
    if not found:
        raise ValueError(f"no actor with the id or name {actor!r}")
    # Several actors had that name over time (or in several namespaces): the live one first,
    # then the last one.
    live = [a for a in found if a["state"] != "DEAD"]
    return (live or found)[-1]


async def find_log(
    ask: inspection.Ask,
    gcs_address: str,
    *,
    node_id: str | None = None,
    filename: str | None = None,
    actor: str | None = None,
    task_id: str | None = None,
    pid: int | None = None,
) -> LogFile:
    """The log file that a filename on a node, an actor (id or name), a task (its latest
    attempt's worker) or a worker's pid names."""
    named = {"filename": filename, "actor": actor, "task": task_id, "pid": pid}
    given = [k for k, v in named.items() if v]
    if len(given) != 1:
        raise ValueError(
            f"name one log: a filename (with its node), an actor, a task or a pid; got "
            f"{', '.join(given) or 'none'}"
        )
    nodes = await _live_nodes(ask, gcs_address)
    if filename or pid:
        candidates = _pick_node(nodes, node_id)
        rows = await list_logs(ask, gcs_address, node_id)
        for row in rows:
            if (filename and row["filename"] == filename) or (pid and row["pid"] == pid):
                node = next(n for n in candidates if n["node_id"] == row["node_id"])
                return LogFile(node["node_id"], node["address"], row["filename"])
        what = f"file {filename!r}" if filename else f"worker with pid {pid}"
        where = f"node {node_id}" if node_id else "any live node"
        raise ValueError(f"no log {what} on {where} (list them with `actorflow logs`)")
    if actor:
        actors = await inspection._ask_gcs(ask, gcs_address, "list_actors", "actors")
        row = _match_actor(actors, actor)
        worker_id, where = row.get("worker_id") or "", row.get("node_id") or ""
        who = f"actor {actor!r}"
    else:
        snapshot = await inspection.collect_tasks(ask, gcs_address)
        attempts = [r for r in task_history.attempt_rows(snapshot) if r["task_id"] == task_id]
        if not attempts:
            raise ValueError(f"no task {task_id!r} in the cluster's task events")
        latest = max(attempts, key=lambda r: r["attempt_number"])
        worker_id, where = latest["worker_id"] or "", latest["node_id"] or ""
        who = f"task {task_id!r}"
    if not worker_id or not where:
        raise ValueError(f"{who} has not run on a worker yet: no log")
    found = [n for n in nodes if n["node_id"] == where]
    if not found:
        raise errors.ActorflowError(f"{who} ran on node {where}, which is dead: its logs are gone")
    return LogFile(where, found[0]["address"], f"worker-{worker_id}.log")


async def read_log(
    ask: inspection.Ask, log: LogFile, *, tail: int = -1, offset: int = 0
) -> dict[str, Any]:
    """A piece of the file (node/logs.py's read_log reply): its last ``tail`` lines (tail >= 0)
    or the bytes from ``offset``."""
    return await _ask_logs(ask, log.node_address, ReadLog(log.filename, tail, offset))  # type: ignore[no-any-return]
