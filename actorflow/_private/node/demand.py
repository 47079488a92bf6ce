"""Resource demand, as plain data: what waits for resources on a node, what could fit nowhere,
and whether a node is idle. The raylet reports it with its heartbeats; the GCS sums it over the
cluster for the state API, its metrics and the autoscaler (``actorflow.autoscaler``).

A shape is a resource request as a dict (``{"CPU": 1.0}``); demand is a list of
``{"shape": ..., "count": n, "kind": "task"|"actor"}`` rows, one per distinct (shape, kind).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

TASK, ACTOR = "task", "actor"


def shape_key(shape: Mapping[str, float]) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in shape.items() if v))


def count_shapes(items: Iterable[tuple[Mapping[str, float], str]]) -> list[dict[str, Any]]:
    """(shape, kind) pairs counted per distinct pair, largest count first."""
    counts: dict[tuple, int] = {}
    for shape, kind in items:
        key = (shape_key(shape), kind)
        counts[key] = counts.get(key, 0) + 1
    rows = [{"shape": dict(key), "count": n, "kind": kind} for (key, kind), n in counts.items()]
    return sorted(rows, key=lambda r: (-r["count"], r["kind"], sorted(r["shape"].items())))


def merge(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several nodes summed per (shape, kind)."""
    return count_shapes(
        (row["shape"], row.get("kind", TASK)) for row in rows for _ in range(int(row["count"]))
    )


class InfeasibleLog:
    """The requests no node could ever fit, seen in the last ``window`` seconds (they failed at
    once with TaskUnschedulableError; the autoscaler may still add a node that fits them)."""

    def __init__(self, window: float = 60.0, limit: int = 256) -> None:
        self.window = window
        self._seen: deque[tuple[float, dict[str, float], str]] = deque(maxlen=limit)

    def add(self, shape: Mapping[str, float], kind: str = TASK) -> None:
        self._seen.append((time.monotonic(), dict(shape), kind))

    def rows(self) -> list[dict[str, Any]]:
        cutoff = time.monotonic() - self.window
        while self._seen and self._seen[0][0] < cutoff:
            self._seen.popleft()
        return count_shapes((shape, kind) for _, shape, kind in self._seen)


def is_idle(report: Mapping[str, Any]) -> bool:
    """A node with nothing anyone needs: no lease (tasks or actors), no queued request, no
    worker kept for the objects or actors it owns, no primary copy in its object store."""
    busy = report.get("busy") or {}
    return not report.get("demand") and not any(busy.get(k) for k in BUSY_KEYS)


BUSY_KEYS = ("leases", "queued", "kept_workers", "primary_objects")
