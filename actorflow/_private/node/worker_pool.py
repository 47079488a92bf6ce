"""Starting and watching worker processes for one node.

Workers are forked from the node's fork server (worker/forkserver.py), which has imported the
worker's code once, so a worker is ready in milliseconds. With ``use_forkserver`` off (or where
fork is unavailable) each worker is a fresh ``python -m actorflow._private.worker.main``; so is a
worker of a runtime_env that a fork cannot give: another Python (pip's virtualenv), or variables
that only take effect as a process starts (``LD_*``, ``PYTHON*``). Other env variables and the
working directory are applied by the forked worker itself before it runs any user code. Either
way its settings come in one WorkerSpec, written to a file of the session directory that only
this user can read and that the worker unlinks once read (so the token is on no command line,
where ``ps`` shows it, and in no environment); its stdout and stderr go to a log file in the
session directory, and the worker also forwards what it prints to the driver itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from actorflow._private import ids
from actorflow._private.config import PARENT_PID_VARIABLE, TOKEN_VARIABLE
from actorflow._private.protocol.worker_spec import WorkerSpec
from actorflow._private.runtime_env.spec import expand_env_vars, needs_fresh_process

logger = logging.getLogger("actorflow.worker_pool")

STARTING, IDLE, LEASED, DEAD = "starting", "idle", "leased", "dead"
EXITED_KEPT = 1000  # exited workers remembered for their log files


@dataclass(eq=False)
class WorkerProcess:
    worker_id: str
    state: str = STARTING
    address: str = ""
    pid: int = 0
    log_path: str = ""
    lease_id: str | None = None
    idle_since: float = 0.0
    exit_code: int | None = None
    exited: asyncio.Future | None = None
    extra: dict = field(default_factory=dict)


class _ForkServer:
    """The node's side of the fork-server protocol."""

    def __init__(
        self, process: asyncio.subprocess.Process, on_exit: Callable[[int, int | None], None]
    ) -> None:
        self.process = process
        self._on_exit = on_exit
        self._pending: dict[str, asyncio.Future] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def fork(self, worker_id: str, log_path: str, spec_path: str) -> int:
        assert self.process.stdin is not None
        future = asyncio.get_running_loop().create_future()
        self._pending[worker_id] = future
        command = {"worker_id": worker_id, "log_path": log_path, "spec_path": spec_path}
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        return await future

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if "exited" in message:
                self._on_exit(message["exited"], message["code"])
            else:
                future = self._pending.pop(message["worker_id"], None)
                if future is not None and not future.done():
                    future.set_result(message["pid"])
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RuntimeError("the fork server exited"))
        self._on_exit(-1, None)  # every worker it forked dies with it

    async def aclose(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), 2.0)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.reader.cancel()


class WorkerPool:
    def __init__(
        self,
        *,
        session_dir: str,
        on_exit: Callable[[WorkerProcess], None],
        use_forkserver: bool = True,
    ) -> None:
        self.session_dir = session_dir
        self.spec_dir = os.path.join(session_dir, "worker-specs")
        os.makedirs(self.spec_dir, mode=0o700, exist_ok=True)
        self.on_exit = on_exit
        self.use_forkserver = use_forkserver and hasattr(os, "fork")
        self.workers: dict[str, WorkerProcess] = {}
        # The last workers that exited, so that their logs can still be found (node/logs.py).
        self.exited: deque[WorkerProcess] = deque(maxlen=EXITED_KEPT)
        self._by_pid: dict[int, WorkerProcess] = {}
        self._forkserver: _ForkServer | None = None
        self._forkserver_starting: asyncio.Future | None = None
        self._watchers: set[asyncio.Task] = set()

    def count(self, *states: str) -> int:
        return sum(1 for w in self.workers.values() if w.state in states)

    def new_worker(self) -> WorkerProcess:
        """A worker record in the STARTING state; launch() starts its process."""
        worker_id = ids.new_id(8).hex()
        log_path = os.path.join(self.session_dir, "logs", f"worker-{worker_id}.log")
        worker = WorkerProcess(
            worker_id=worker_id,
            log_path=log_path,
            exited=asyncio.get_running_loop().create_future(),
        )
        self.workers[worker_id] = worker
        return worker

    def spec_path(self, worker: WorkerProcess) -> str:
        return os.path.join(self.spec_dir, f"{worker.worker_id}.spec")

    async def launch(self, worker: WorkerProcess, spec: WorkerSpec) -> WorkerProcess:
        """Start worker's process with spec (its job's; this worker's id and parent added)."""
        spec_path = self.spec_path(worker)
        try:
            if self.use_forkserver and not needs_fresh_process(spec.env_vars, spec.python):
                forkserver = await self._get_forkserver()
                spec.replace(worker_id=worker.worker_id, parent_pid=forkserver.process.pid).write(
                    spec_path
                )
                worker.pid = await forkserver.fork(worker.worker_id, worker.log_path, spec_path)
                self._by_pid[worker.pid] = worker
            else:
                spec.replace(worker_id=worker.worker_id, parent_pid=os.getpid()).write(spec_path)
                await self._spawn(worker, spec_path, spec)
        except BaseException:
            self.workers.pop(worker.worker_id, None)
            self._remove_spec(worker)
            raise
        if worker.extra.get("killed"):  # shut down while it was being started
            self.kill(worker)
        return worker

    def _remove_spec(self, worker: WorkerProcess) -> None:
        """A worker that died before it read its spec leaves the file: remove it."""
        try:
            os.unlink(self.spec_path(worker))
        except OSError:
            pass

    async def _spawn(self, worker: WorkerProcess, spec_path: str, spec: WorkerSpec) -> None:
        """A fresh interpreter: the env's Python (a pip runtime_env's virtualenv) or ours, with
        the env's variables in its environment from the start and its working directory."""
        env = _child_env()
        env.update(expand_env_vars(spec.env_vars, env))
        with open(worker.log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                spec.python or sys.executable,
                "-m",
                "actorflow._private.worker.main",
                "--spec",
                spec_path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=spec.working_dir or None,
                start_new_session=True,  # a Ctrl-C in the driver's terminal is for the driver
            )
        worker.pid = process.pid

        async def watch() -> None:
            self._exited(worker, await process.wait())

        task = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _get_forkserver(self) -> _ForkServer:
        if self._forkserver is not None:
            return self._forkserver
        if self._forkserver_starting is None:
            self._forkserver_starting = asyncio.ensure_future(self._start_forkserver())
        return await asyncio.shield(self._forkserver_starting)

    async def _start_forkserver(self) -> _ForkServer:
        log_path = os.path.join(self.session_dir, "logs", "forkserver.log")
        with open(log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "actorflow._private.worker.forkserver",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=_child_env(),
                start_new_session=True,
            )
        self._forkserver = _ForkServer(process, self._forked_exit)
        self._forkserver_starting = None
        return self._forkserver

    def _forked_exit(self, pid: int, code: int | None) -> None:
        if pid == -1:  # the fork server itself is gone: so is every worker it forked
            self._forkserver = None
            for orphan in list(self._by_pid.values()):
                self._exited(orphan, None)
            self._by_pid.clear()
            return
        worker = self._by_pid.pop(pid, None)
        if worker is not None:
            self._exited(worker, code)

    def _exited(self, worker: WorkerProcess, code: int | None) -> None:
        if worker.state == DEAD and worker.exited is not None and worker.exited.done():
            return
        self._remove_spec(worker)
        worker.exit_code = code
        worker.state = DEAD
        self.workers.pop(worker.worker_id, None)
        self.exited.append(worker)
        if worker.exited is not None and not worker.exited.done():
            worker.exited.set_result(code)
        self.on_exit(worker)

    def kill(self, worker: WorkerProcess, sig: int = signal.SIGKILL) -> None:
        worker.extra["killed"] = True
        if worker.pid and not (worker.exited is not None and worker.exited.done()):
            try:
                os.kill(worker.pid, sig)
            except ProcessLookupError:
                pass

    async def shutdown(self, grace: float = 1.0) -> None:
        """End every worker this pool started: SIGTERM, then SIGKILL after the grace period."""
        workers = list(self.workers.values())
        for worker in workers:
            self.kill(worker, signal.SIGTERM)
        waits = [w.exited for w in workers if w.exited is not None and w.pid]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace)
            if pending:
                for worker in workers:
                    self.kill(worker, signal.SIGKILL)
                await asyncio.wait(pending, timeout=grace)
        if self._forkserver is None and self._forkserver_starting is not None:
            try:  # started just now: wait for it, so that it can be ended too
                await asyncio.wait_for(asyncio.shield(self._forkserver_starting), 10)
            except Exception:
                pass
        if self._forkserver is not None:
            await self._forkserver.aclose()
            self._forkserver = None
        for task in list(self._watchers):
            task.cancel()


def _child_env() -> dict[str, str]:
    """The environment of a worker or fork server: this process's, without a token (the spec has
    the cluster's) and marked with our pid (the fork server checks its parent by it; tests find a
    cluster's processes by it). No settings: those are in the WorkerSpec."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    env[PARENT_PID_VARIABLE] = str(os.getpid())
    return env
