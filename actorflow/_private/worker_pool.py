"""Starting and watching worker processes for one node.

A worker is ``python -m actorflow._private.worker_main`` with its settings in the environment
(never the token on the command line, where ``ps`` shows it). Its stdout and stderr go to a log file
in the session directory; the worker also forwards what it prints to the driver itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from actorflow._private import ids

logger = logging.getLogger("actorflow.worker_pool")

STARTING, IDLE, LEASED, DEAD = "starting", "idle", "leased", "dead"


@dataclass(eq=False)
class WorkerProcess:
    worker_id: str
    process: asyncio.subprocess.Process | None = None
    state: str = STARTING
    address: str = ""
    pid: int = 0
    log_path: str = ""
    lease_id: str | None = None
    idle_since: float = 0.0
    exit_code: int | None = None
    extra: dict = field(default_factory=dict)


class WorkerPool:
    def __init__(self, *, session_dir: str, env: dict[str, str],
                 on_exit: Callable[[WorkerProcess], None]) -> None:
        self.session_dir = session_dir
        self.env = env
        self.on_exit = on_exit
        self.workers: dict[str, WorkerProcess] = {}
        self._watchers: set[asyncio.Task] = set()

    def count(self, *states: str) -> int:
        return sum(1 for w in self.workers.values() if w.state in states)

    def new_worker(self) -> WorkerProcess:
        """A worker record in the STARTING state; launch() starts its process."""
        worker_id = ids.new_id(8).hex()
        log_path = os.path.join(self.session_dir, "logs", f"worker-{worker_id}.log")
        worker = WorkerProcess(worker_id=worker_id, log_path=log_path)
        self.workers[worker_id] = worker
        return worker

    async def launch(self, worker: WorkerProcess) -> WorkerProcess:
        worker_id, log_path = worker.worker_id, worker.log_path
        env = dict(os.environ)
        env.update(self.env)
        env["ACTORFLOW_WORKER_ID"] = worker_id
        try:
            with open(log_path, "ab") as log:
                worker.process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "actorflow._private.worker_main",
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                    start_new_session=True,  # a Ctrl-C in the driver's terminal is for the driver
                )
        except BaseException:
            self.workers.pop(worker_id, None)
            raise
        worker.pid = worker.process.pid
        if worker.extra.get("killed"):  # shut down while it was being started
            self.kill(worker)
        task = asyncio.get_running_loop().create_task(self._watch(worker))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return worker

    async def _watch(self, worker: WorkerProcess) -> None:
        assert worker.process is not None
        worker.exit_code = await worker.process.wait()
        worker.state = DEAD
        self.workers.pop(worker.worker_id, None)
        self.on_exit(worker)

    def kill(self, worker: WorkerProcess, sig: int = signal.SIGKILL) -> None:
        worker.extra["killed"] = True
        if worker.process is not None and worker.process.returncode is None:
            try:
                worker.process.send_signal(sig)
            except ProcessLookupError:
                pass

    async def shutdown(self, grace: float = 1.0) -> None:
        """End every worker this pool started: SIGTERM, then SIGKILL after the grace period."""
        workers = list(self.workers.values())
        for worker in workers:
            self.kill(worker, signal.SIGTERM)
        procs = [w.process for w in workers if w.process is not None]
        if procs:
            done, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs],
                                               timeout=grace)
            for worker in workers:
                self.kill(worker, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=grace)
        for task in list(self._watchers):
            task.cancel()
