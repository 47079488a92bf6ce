"""A node's log service (actor "logs"): lists and reads the log files of the workers this node
started (live ones and the last exited ones) and of the node process itself.

Only those files can be read: a name is looked up among them, never joined to a path, so a
request cannot reach another file. The bytes travel over the node's authenticated port, so a
tool on another machine reads them as one on this machine does.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from typing import Any

from actorflow._private import errors
from actorflow._private.node.worker_pool import DEAD, WorkerPool, WorkerProcess
from actorflow._private.protocol.logs import ListLogs, ReadLog
from actorflow._private.protocol.message import decode
from actorflow._private.runtime import Call

MAX_READ = 8 << 20  # a larger max_bytes is cut to this: one reply stays well under a frame


class LogService:
    def __init__(self, pool: WorkerPool, node_log: str = "") -> None:
        self.pool = pool
        self.node_log = node_log  # the node process's own log ("" when it has none)

    def _workers(self) -> Iterable[WorkerProcess]:
        seen = set()
        for worker in [*self.pool.workers.values(), *reversed(self.pool.exited)]:
            if worker.log_path and worker.worker_id not in seen:
                seen.add(worker.worker_id)
                yield worker

    def _files(self) -> dict[str, dict[str, Any]]:
        """filename -> its row (with "path", left out of the replies)."""
        files: dict[str, dict[str, Any]] = {}
        if self.node_log:
            files[os.path.basename(self.node_log)] = {
                "kind": "node",
                "worker_id": "",
                "pid": os.getpid(),
                "alive": True,
                "path": self.node_log,
            }
        for worker in self._workers():
            files[os.path.basename(worker.log_path)] = {
                "kind": "worker",
                "worker_id": worker.worker_id,
                "pid": worker.pid,
                "alive": worker.state != DEAD,
                "path": worker.log_path,
            }
        return files

    def handle_list_logs(self, payload: Any, call: Call) -> list[dict[str, Any]]:
        (pattern,) = decode(ListLogs, payload or [])
        rows = []
        for name, row in self._files().items():
            if pattern and not fnmatch.fnmatch(name, pattern):
                continue
            try:
                stat = os.stat(row["path"])
            except OSError:
                continue  # not written yet, or removed
            rows.append(
                {
                    "filename": name,
                    **{k: v for k, v in row.items() if k != "path"},
                    "size": stat.st_size,
                    "modified": stat.st_mtime,
                }
            )
        return rows

    def handle_read_log(self, payload: list, call: Call) -> dict[str, Any]:
        request = decode(ReadLog, payload)
        row = self._files().get(request.filename)
        if row is None:
            raise errors.ActorflowError(
                f"no log file {request.filename!r} on this node (list them with "
                f"`actorflow logs --node ID`)"
            )
        limit = max(1, min(int(request.max_bytes), MAX_READ))
        with open(row["path"], "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if request.tail >= 0:
                data = _tail(f, size, request.tail, limit)
            else:
                f.seek(min(max(0, request.offset), size))
                data = f.read(limit)
            end = f.tell() if request.tail < 0 else size
        return {"filename": request.filename, "data": data, "offset": end, "size": size}


def _tail(f: Any, size: int, lines: int, limit: int) -> bytes:
    """The last `lines` lines of f (at most `limit` bytes of them)."""
    if lines == 0:
        return b""
    start = max(0, size - limit)
    f.seek(start)
    data = f.read(size - start)
    # A final newline ends the last line: it does not start another.
    cut = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return data if start == 0 else data[data.find(b"\n") + 1 :]
    return data[cut + 1 :]
