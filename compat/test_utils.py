"""The helpers Ray's tests import from ``ray._private.test_utils`` / ``ray._common.test_utils``,
written here on the public API only (``ray`` is real Ray or, through the alias, actorflow), so
the same helpers run on both. Only what the fetched test files use is here; a name that is not
is an ImportError naming this module.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import ray

# A driver started by run_string_as_driver that runs longer than this is ended: no helper
# waits forever.
DRIVER_TIMEOUT_S = 300


class RayTestTimeoutException(Exception):
    """A condition a test waited for did not come true in time."""


def client_test_enabled() -> bool:
    """Ray's tests ask whether they run through Ray Client; the harness never does."""
    return False


def wait_for_condition(
    condition_predictor: Callable[..., Any],
    timeout: float = 10,
    retry_interval_ms: float = 100,
    raise_exceptions: bool = False,
    **kwargs: Any,
) -> None:
    """Poll ``condition_predictor(**kwargs)`` until it is true; RuntimeError after ``timeout``
    seconds, with the last exception the predictor raised."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if condition_predictor(**kwargs):
                return
        except Exception as error:
            if raise_exceptions:
                raise
            last_error = error
        time.sleep(retry_interval_ms / 1000.0)
    message = "The condition wasn't met before the timeout expired."
    if last_error is not None:
        message += f" Last exception: {last_error!r}"
    raise RuntimeError(message)


async def async_wait_for_condition(
    condition_predictor: Callable[..., Any],
    timeout: float = 10,
    retry_interval_ms: float = 100,
    **kwargs: Any,
) -> None:
    """wait_for_condition for async code; the predictor may be a coroutine function."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition_predictor(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except Exception as error:
            last_error = error
        await asyncio.sleep(retry_interval_ms / 1000.0)
    message = "The condition wasn't met before the timeout expired."
    if last_error is not None:
        message += f" Last exception: {last_error!r}"
    raise RuntimeError(message)


@ray.remote(num_cpus=0)
class SignalActor:
    """An event in an actor: ``wait`` blocks until ``send``."""

    def __init__(self) -> None:
        self.ready_event = asyncio.Event()
        self.num_waiters = 0

    def send(self, clear: bool = False) -> None:
        self.ready_event.set()
        if clear:
            self.ready_event.clear()

    async def wait(self, should_wait: bool = True) -> None:
        if should_wait:
            self.num_waiters += 1
            await self.ready_event.wait()
            self.num_waiters -= 1

    async def cur_num_waiters(self) -> int:
        return self.num_waiters


@ray.remote(num_cpus=0)
class Semaphore:
    """An asyncio.Semaphore in an actor."""

    def __init__(self, value: int = 1) -> None:
        self._sema = asyncio.Semaphore(value=value)

    async def acquire(self) -> None:
        await self._sema.acquire()

    async def release(self) -> None:
        self._sema.release()

    async def locked(self) -> bool:
        return self._sema.locked()


def run_string_as_driver(
    driver_script: str, env: dict[str, str] | None = None, encode: str = "utf-8"
) -> str:
    """Run ``driver_script`` in a new Python process (this interpreter, this environment unless
    ``env``) and return its stdout and stderr; CalledProcessError if it fails."""
    proc = subprocess.run(
        [sys.executable, "-"],
        input=driver_script.encode(encode),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        timeout=DRIVER_TIMEOUT_S,
    )
    output = proc.stdout.decode(encode, errors="replace")
    if proc.returncode:
        print(output)
        raise subprocess.CalledProcessError(proc.returncode, proc.args, output)
    return output


def run_string_as_driver_nonblocking(
    driver_script: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``driver_script`` in a new Python process and return it (stdout and stderr are
    pipes). The script arrives on stdin, so the process sees no script file."""
    reader = "import sys; script = sys.stdin.read(); sys.stdin.close(); exec(script)"
    proc = subprocess.Popen(
        [sys.executable, "-c", reader],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(driver_script.encode("utf-8"))
    proc.stdin.close()
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not reaped it yet
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_pid_to_exit(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    raise RayTestTimeoutException(f"Timed out while waiting for process {pid} to exit.")


def kill_actor_and_wait_for_failure(
    actor: Any, timeout: float = 10, retry_interval_ms: float = 100
) -> None:
    """``ray.kill`` the actor, then wait until a call to it fails (the kill took effect)."""
    ray.kill(actor)
    probe = getattr(actor, "__ray_ready__", None)
    deadline = time.monotonic() + timeout
    while probe is not None and time.monotonic() < deadline:
        try:
            ray.get(probe.remote(), timeout=retry_interval_ms / 1000.0 + 1)
        except ray.exceptions.GetTimeoutError:
            continue
        except ray.exceptions.RayActorError:
            return
        time.sleep(retry_interval_ms / 1000.0)
    if probe is not None:
        raise RuntimeError(f"It took too much time to kill an actor: {actor}")


@ray.remote(num_cpus=0)
class _BatchQueueActor:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    async def put_nowait(self, item: Any) -> None:
        self.queue.put_nowait(item)

    async def put_nowait_batch(self, items: list[Any]) -> None:
        if self.queue.maxsize and self.queue.qsize() + len(items) > self.queue.maxsize:
            raise ValueError(f"cannot add {len(items)} items to a queue of {self.queue.qsize()}")
        for item in items:
            self.queue.put_nowait(item)

    async def get_batch(
        self, batch_size: int, total_timeout: float | None, first_timeout: float | None
    ) -> list[Any]:
        """Up to ``batch_size`` items: wait ``first_timeout`` for the first, then take what
        arrives within ``total_timeout`` (0: only what is already there)."""
        start = time.monotonic()
        batch = [await asyncio.wait_for(self.queue.get(), first_timeout)]
        while len(batch) < batch_size:
            left = None if total_timeout is None else total_timeout - (time.monotonic() - start)
            if left is not None and left <= 0:
                while len(batch) < batch_size and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch


class BatchQueue:
    """A queue of items taken in batches (Ray's test BatchQueue), backed by an actor."""

    def __init__(self, maxsize: int = 0) -> None:
        self.actor = _BatchQueueActor.remote(maxsize)

    def put_nowait(self, item: Any) -> None:
        ray.get(self.actor.put_nowait.remote(item))

    def put_nowait_batch(self, items: list[Any]) -> None:
        ray.get(self.actor.put_nowait_batch.remote(list(items)))

    def get_batch(
        self,
        batch_size: int | None = None,
        total_timeout: float | None = None,
        first_timeout: float | None = None,
    ) -> list[Any]:
        return ray.get(self.actor.get_batch.remote(batch_size or 1, total_timeout, first_timeout))


def create_remote_signal_actor(ray_module: Any) -> Any:
    """Ray's ray.tests.client_test_utils helper: the SignalActor class for a given ``ray``."""
    return SignalActor
