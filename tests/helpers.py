"""Small helpers shared by the test modules. Importable by workers too (they get the driver's
sys.path), so remote functions may call them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import actorflow


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


# -- remote helpers shared by several test modules ----------------------------------------------


@actorflow.remote
def gated(gate: str, value=None, started: str | None = None):
    """Returns value once the file gate exists; touches started (with its pid) on entry."""
    if started:
        touch(started, str(os.getpid()))
    wait_for_file(gate)
    return value


@actorflow.remote
def sleeper(started: str, seconds: float = 60.0):
    """Sleeps; records in started + '.exc' what interrupted it."""
    try:  # a cancel may land as soon as `started` exists
        touch(started, str(os.getpid()))
        time.sleep(seconds)
    except BaseException as exc:
        touch(started + ".exc", type(exc).__name__)
        raise
    return "slept"


@actorflow.remote
class Signal:
    """A one-shot gate actor: ``wait`` returns once ``send`` was called."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.waiters = 0

    async def wait(self) -> bool:
        self.waiters += 1
        await asyncio.wait_for(self.event.wait(), 30)
        return True

    async def send(self) -> None:
        self.event.set()

    async def num_waiters(self) -> int:
        return self.waiters


def poll_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> Any:
    """Call predicate until it returns something truthy (returned); fail after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"condition not met within {timeout} s" + (f": {message}" if message else "")
            )
        time.sleep(interval)
