"""Small helpers shared by the test modules. Importable by workers too (they get the driver's
sys.path), so remote functions may call them."""

from __future__ import annotations

import os
import time


def wait_for_file(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.005)


def touch(path: str, text: str = "") -> None:
    """Create path with text, atomically: once it exists, its text is complete."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def process_gone(pid: int) -> bool:
    """True once pid no longer runs (no such process, or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] in ("Z", "X")
    except OSError:
        return True
    return False
