"""A process's reports to its node's metrics collector (node/metrics.py).

Every second or so (Config.metrics_report_seconds) the process sends one ReportMetrics to its
node, only if something changed: the deltas of its recorder (user metrics, sampled request
latencies), its unfinished calls by state and the calls that ended since the last report. The
states are counted from the tables the submitters and the executor keep anyway, at report time;
the one thing done per call is a dict addition when a call ends (calls.Completion).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from actorflow._private.metrics.recorder import Recorder, recorder_of
from actorflow._private.protocol.metrics import ReportMetrics
from actorflow._private.worker.task_submitter import QUEUED, RESOLVING, RUNNING

logger = logging.getLogger("actorflow.metrics")

_TASK_STATES = {
    RESOLVING: "PENDING_ARGS_AVAIL",
    QUEUED: "PENDING_NODE_ASSIGNMENT",
    RUNNING: "SUBMITTED_TO_WORKER",
}


class MetricsReporter:
    def __init__(self, core: Any) -> None:  # the process's CoreWorker
        self.core = core
        self.recorder: Recorder = recorder_of(core.runtime)
        # The names of the calls this process is executing now (the executor's, in a worker).
        self.running: Callable[[], list[str]] = list
        self._last_tasks: list | None = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """On the runtime loop."""
        if self._task is None and self.core.config.metrics_report_seconds > 0:
            self._task = self.core.runtime.loop.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while not self.core.runtime.closed:
            await asyncio.sleep(self.core.config.metrics_report_seconds)
            try:
                self.report()
            except Exception:
                logger.exception("reporting metrics failed")

    def tasks_now(self) -> list:
        counts: dict[tuple[str, str], int] = {}

        def add(name: str, state: str, n: int = 1) -> None:
            counts[(name, state)] = counts.get((name, state), 0) + n

        for task in list(self.core.submitter.tasks.values()):
            state = _TASK_STATES.get(task.state)
            if state is not None and not task.finished:
                add(task.fn_name, state)
        for channel, call in list(self.core.actor_submitter._calls.values()):
            if not call.finished:
                add(
                    call.fn_name,
                    "SUBMITTED_TO_WORKER" if channel.address else "PENDING_NODE_ASSIGNMENT",
                )
        for name in self.running():
            add(name, "RUNNING")
            add(name, "SUBMITTED_TO_WORKER", -1)
        return sorted([n, s, c] for (n, s), c in counts.items() if c)

    def report(self) -> bool:
        """Send what changed since the last report (loop thread); whether anything was sent."""
        tasks: list | None = self.tasks_now()
        if tasks == self._last_tasks:
            tasks = None
        else:
            self._last_tasks = tasks
        done_table = self.core.completion.done
        done = [[n, s, c] for (n, s), c in done_table.items()]
        done_table.clear()
        report = self.recorder.take()
        if report is None and tasks is None and not done:
            return False
        message = ReportMetrics(self.core.address, report, tasks, done or None)
        self.core.runtime.tell(self.core.raylet_address, message)
        return True
