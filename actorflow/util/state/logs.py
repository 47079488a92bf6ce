"""The cluster's log files (Ray's ``ray.util.state.list_logs`` / ``get_log``): every node serves
the logs of the worker processes it started (one file per worker, ``worker-<id>.log``, its
stdout and stderr) and its own, to any authenticated caller, so they are read through the
cluster from anywhere, not from the local disk.

``address`` is as everywhere in ``actorflow.util.state``.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator
from typing import Any

from actorflow._private.cluster import inspection, log_files
from actorflow.util.state.common import DEFAULT_RPC_TIMEOUT

__all__ = ["get_log", "list_logs", "log_rows"]


def log_rows(
    address: str | None = None, node_id: str | None = None, glob_filter: str | None = None
) -> list[dict[str, Any]]:
    """One row per log file on the live nodes (or on node_id's, a prefix of it will do), as
    ``actorflow logs`` lists them: node_id, filename, kind ("worker" or "node"), worker_id,
    pid, alive (the process runs), size (bytes), modified (a Unix time)."""

    async def job(ask: inspection.Ask, gcs_address: str) -> list[dict[str, Any]]:
        return await log_files.list_logs(ask, gcs_address, node_id, glob_filter or "")

    return inspection.run(address, job)


def list_logs(
    address: str | None = None,
    node_id: str | None = None,
    node_ip: str | None = None,
    glob_filter: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
) -> dict[str, list[str]]:
    """The log files of one node by kind, as Ray's: ``{"worker": [...], "node": [...]}``
    (filenames for ``get_log``). node_id (or node_ip) picks the node; the head's by default."""
    rows = _rows_of_node(address, node_id, node_ip, glob_filter, timeout)
    listed: dict[str, list[str]] = {}
    for row in rows:
        listed.setdefault(row["kind"], []).append(row["filename"])
    return listed


def _rows_of_node(
    address: str | None,
    node_id: str | None,
    node_ip: str | None,
    glob_filter: str | None,
    timeout: int,
) -> list[dict[str, Any]]:
    async def job(ask: inspection.Ask, gcs_address: str) -> list[dict[str, Any]]:
        node = node_id or await _node_of_ip(ask, gcs_address, node_ip)
        rows = await log_files.list_logs(ask, gcs_address, node, glob_filter or "")
        if node is None and rows:  # the head's (listed first)
            rows = [r for r in rows if r["node_id"] == rows[0]["node_id"]]
        return rows

    return inspection.run(address, job, timeout)


async def _node_of_ip(ask: inspection.Ask, gcs_address: str, node_ip: str | None) -> str | None:
    if not node_ip:
        return None
    nodes = await inspection._ask_gcs(ask, gcs_address, "get_nodes")
    for node in nodes:
        if node.get("alive", True) and node.get("host") == node_ip:
            return str(node["node_id"])
    raise ValueError(f"no live node at {node_ip!r}")


def get_log(
    address: str | None = None,
    node_id: str | None = None,
    node_ip: str | None = None,
    filename: str | None = None,
    actor_id: str | None = None,
    task_id: str | None = None,
    pid: int | None = None,
    follow: bool = False,
    tail: int = -1,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    suffix: str = "out",
    encoding: str | None = "utf-8",
    errors: str | None = "strict",
    submission_id: str | None = None,
    attempt_number: int = 0,
    _interval: float | None = None,
) -> Iterator[Any]:
    """The text of one log file, in pieces (Ray's): the file named on a node (``filename``
    with node_id or node_ip; the head's by default), an actor's (``actor_id``, or its name),
    the worker's that ran a task (``task_id``, its latest attempt) or a worker's by ``pid``.
    ``tail``: only the last lines (-1: the whole file). ``follow``: go on yielding what is
    written to it, polling every ``_interval`` seconds (0.5), until the caller stops
    iterating. ``encoding=None`` yields bytes. (``suffix`` is accepted for Ray's sake: a
    worker's stdout and stderr share one file here.)"""
    if submission_id:
        raise ValueError("job submission is not supported by actorflow: no submission logs")
    if tail is None or isinstance(tail, bool) or not isinstance(tail, int):
        raise ValueError(f"tail must be an int (-1 for the whole file), got {tail!r}")

    async def find(ask: inspection.Ask, gcs_address: str) -> log_files.LogFile:
        node = node_id or await _node_of_ip(ask, gcs_address, node_ip)
        if filename and not node:
            rows = await log_files.list_logs(ask, gcs_address)
            node = rows[0]["node_id"] if rows else None  # the head's node
        return await log_files.find_log(
            ask,
            gcs_address,
            node_id=node,
            filename=filename,
            actor=actor_id,
            task_id=task_id,
            pid=pid,
        )

    log = inspection.run(address, find, timeout)

    def read(tail: int, offset: int) -> dict[str, Any]:
        async def job(ask: inspection.Ask, gcs_address: str) -> dict[str, Any]:
            return await log_files.read_log(ask, log, tail=tail, offset=offset)

        return inspection.run(address, job, timeout)

    # Incremental: a piece may end inside a multi-byte character.
    decoder = (
        None if encoding is None else codecs.getincrementaldecoder(encoding)(errors or "strict")
    )

    def decode(data: bytes) -> Any:
        return data if decoder is None else decoder.decode(data)

    piece = read(tail, 0)
    if piece["data"]:
        yield decode(piece["data"])
    offset = piece["offset"]
    while piece["offset"] < piece["size"] and tail < 0:  # a file larger than one reply
        piece = read(-1, offset)
        offset = piece["offset"]
        if piece["data"]:
            yield decode(piece["data"])
    while follow:
        time.sleep(0.5 if _interval is None else _interval)
        piece = read(-1, offset)
        if piece["size"] < offset:  # truncated: start again
            offset = 0
            continue
        offset = piece["offset"]
        if piece["data"]:
            yield decode(piece["data"])
