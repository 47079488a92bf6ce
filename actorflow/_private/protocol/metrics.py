"""Messages to a node's metrics collector (actor "metrics", on the node's runtime).

``scrape`` carries no payload: it answers with the node's /metrics text (for tools that reach
the node through the cluster rather than over HTTP).
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message


@message("metrics", "report")
class ReportMetrics(NamedTuple):
    """What a process on this node measured since its last report (sent one way, about once a
    second and only when something changed)."""

    source: str  # the reporting process's address
    report: list | None  # metrics/recorder.py's Recorder.take(): deltas of its own metrics
    # Its unfinished calls now, [[name, state, count], ...], replacing its last ones (None:
    # unchanged); a process's executing calls count as RUNNING, and as -1 SUBMITTED_TO_WORKER
    # each, so that sums over the cluster give every call one state, as Ray's ray_tasks.
    tasks: list | None = None
    done: list | None = None  # [[name, "FINISHED" or "FAILED", count]] since the last report
