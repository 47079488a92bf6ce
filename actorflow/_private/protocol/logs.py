"""Messages to a node's log service (actor "logs"): the log files of the processes it started,
read by tools anywhere in the cluster (``actorflow logs``, ``util.state.get_log``, the
dashboard) through the node's authenticated port, not from the local disk.
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message


@message("logs", "list_logs")
class ListLogs(NamedTuple):
    """Answered with one row per log file: filename, kind ("worker", "node"), worker_id, pid,
    alive, size (bytes), modified (a Unix time)."""

    glob: str = ""  # only the filenames that match this fnmatch pattern ("": all)


@message("logs", "read_log")
class ReadLog(NamedTuple):
    """Answered with {"filename", "data" (bytes), "offset" (where the next read starts),
    "size"}: with tail >= 0, the last ``tail`` lines; else the bytes from ``offset``. At most
    ``max_bytes`` either way (a tail keeps the end)."""

    filename: str
    tail: int = -1
    offset: int = 0
    max_bytes: int = 1 << 20
