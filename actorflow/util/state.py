"""What a running cluster holds: objects and the object store (``ray memory`` and a part of
Ray's ``ray.util.state``).

Every function takes ``address``: None uses this process's cluster when ``actorflow.init()`` was
called (or the code runs in a worker), else the latest session on this machine, like "auto".
"HOST:PORT" (or "tcp://HOST:PORT") is a cluster's GCS address; the cluster token then comes from
``ACTORFLOW_TOKEN`` or the latest session directory. The session directories are found under
``ACTORFLOW_SESSION_ROOT`` (default /tmp/actorflow-sessions).

Processes that exited while being asked are skipped. No reachable cluster raises
``ClusterNotFoundError`` (a ``ConnectionError``); a wrong token raises
``actorflow.exceptions.AuthenticationError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actorflow._private import inspection
from actorflow._private.inspection import ClusterNotFoundError

__all__ = ["ClusterNotFoundError", "list_objects", "memory_summary", "object_store_stats"]


def list_objects(address: str | None = None) -> list[dict[str, Any]]:
    """One row per object known anywhere in the cluster, largest first.

    Keys: object_id (hex), size (bytes), owner (address), owner_pid (None if the owner did not
    answer), where ("memory": inline with its owner, "shared": in a node's shared-memory store,
    "spilled": in the store's spill files, "pending": not computed yet), local_refs (refs in the
    owner's process), borrowers (how many other processes hold refs) and borrower_addresses,
    pinned_by_tasks (pending tasks that take it as an argument), readers (processes that have it
    mapped), contained_refs (refs and handles stored inside it), error (it holds an exception).
    """
    snapshot = inspection.run(address, inspection.collect)
    return _sorted(inspection.merge_objects(snapshot))


def object_store_stats(address: str | None = None) -> dict[str, Any]:
    """The object store's figures in bytes and counts, summed over the nodes: capacity, used
    (segments in use or pooled), in_use, pooled, pinned, objects, spilled_objects, spilled_bytes,
    spill_count, nodes."""

    async def stats(ask: inspection.Ask, gcs_address: str) -> dict[str, Any]:
        return inspection.total_stats((await inspection.collect(ask, gcs_address)).store_stats)

    return inspection.run(address, stats)


def memory_summary(address: str | None = None) -> str:
    """A table of the cluster's objects, one line each, and a line of totals."""
    snapshot = inspection.run(address, inspection.collect)
    return format_summary(_sorted(inspection.merge_objects(snapshot)),
                          inspection.total_stats(snapshot.store_stats), snapshot.unreachable)


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["size"], r["object_id"]))


# -- formatting ---------------------------------------------------------------------------------

_COLUMNS = [("OBJECT ID", "object_id"), ("SIZE", "size"), ("WHERE", "where"),
            ("OWNER PID", "owner_pid"), ("LOCAL REFS", "local_refs"),
            ("BORROWERS", "borrowers"), ("PINNED", "pinned_by_tasks"), ("READERS", "readers"),
            ("CONTAINS", "contained_refs"), ("OWNER", "owner")]


def format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _cell(key: str, row: dict[str, Any]) -> str:
    value = row[key]
    if key == "size":
        return format_bytes(value)
    if key == "where" and row.get("error"):
        return f"{value} (error)"
    return "?" if value is None else str(value)


def format_summary(rows: list[dict[str, Any]], stats: dict[str, Any],
                   unreachable: Sequence[str] = ()) -> str:
    table = [[title for title, _ in _COLUMNS]]
    table += [[_cell(key, row) for _, key in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in table]

    def total(where: str) -> int:
        return sum(r["size"] for r in rows if r["where"] == where)

    lines.append(
        f"{len(rows)} objects: {format_bytes(total('memory'))} inline, "
        f"{format_bytes(total('shared'))} in shared memory, "
        f"{format_bytes(total('spilled'))} spilled; object store: "
        f"{format_bytes(stats['used'])} used of {format_bytes(stats['capacity'])} "
        f"({stats['objects']} objects, {stats['spilled_objects']} spilled)")
    if unreachable:
        lines.append(f"{len(unreachable)} processes did not answer: {', '.join(unreachable)}")
    return "\n".join(lines)
