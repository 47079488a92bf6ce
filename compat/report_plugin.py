"""A pytest plugin (``-p compat.report_plugin``) that appends one JSON line per event to the
file named by COMPAT_REPORT as the run goes (so a run ended at its deadline still has every
case that finished): the collected ids, collection errors, and each phase's outcome with a
one-line reason."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest


def _write(record: dict[str, Any]) -> None:
    path = os.environ.get("COMPAT_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(record) + "\n")


def one_line_reason(report: Any) -> str:
    """The assertion or exception of a failed phase, or the reason of a skip, on one line."""
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        return str(longrepr[2])[:300]
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return " ".join(str(crash.message).split())[:300]
    text = str(longrepr).strip().splitlines()
    errors = [line[1:].strip() for line in text if line.startswith("E ")]
    return (errors[-1] if errors else (text[-1] if text else ""))[:300]


def pytest_collection_finish(session: pytest.Session) -> None:
    _write({"event": "collected", "ids": [item.nodeid for item in session.items]})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write({"event": "collect_error", "id": report.nodeid, "reason": one_line_reason(report)})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    _write(
        {
            "event": "phase",
            "id": report.nodeid,
            "when": report.when,
            "outcome": outcome,
            "seconds": round(report.duration, 2),
            "reason": one_line_reason(report) if outcome in ("failed", "skipped") else "",
        }
    )
