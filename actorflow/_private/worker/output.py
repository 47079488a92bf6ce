"""A worker's print and logging output: kept in its log file and forwarded to the driver, where it
is printed with a prefix saying where it ran, like Ray's ``(pid=...)``."""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO


class ForwardingStream(io.TextIOBase):
    """Writes through to the original stream (the log file) and hands complete lines on."""

    def __init__(self, original: TextIO, forward: Callable[[str], None]) -> None:
        self._original = original
        self._forward = forward
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: Any) -> int:
        text = str(text)
        self._original.write(text)
        with self._lock:
            self._partial += text
            if "\n" not in self._partial:
                return len(text)
            complete, _, self._partial = self._partial.rpartition("\n")
        self._forward(complete)
        return len(text)

    def flush(self) -> None:
        self._original.flush()

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")


def origin_label(name: str) -> str:
    return f"{name} pid={os.getpid()}" if name else f"pid={os.getpid()}"


def print_forwarded(origin: str, is_stderr: bool, text: str) -> None:
    """In the driver: a worker's output lines, each prefixed with where it ran."""
    from actorflow._private.worker import progress_bars

    stream = sys.stderr if is_stderr else sys.stdout
    prefix = f"({origin}) "
    try:
        lines = "".join(prefix + line + "\n" for line in text.splitlines())
        bars = progress_bars.active_manager()
        if bars is not None:  # progress bars are drawn: print around them, not over them
            bars.write(stream, lines)
        else:
            stream.write(lines)
            stream.flush()
    except Exception:
        pass  # the driver's own stdout is closed: nothing to print to
