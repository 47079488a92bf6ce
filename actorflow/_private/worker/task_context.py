"""What the running code is doing: the task it runs for, and whether it may block."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
from collections.abc import Callable, Iterator

from actorflow._private import errors

logger = logging.getLogger("actorflow")

# The task this code runs for (None in a driver's own code): parent of tasks it submits.
current_task_id: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "actorflow_current_task", default=None
)
# Its function or method name, for the prefix of forwarded output.
current_task_name: contextvars.ContextVar[str] = contextvars.ContextVar(
    "actorflow_current_task_name", default=""
)

# The address of the process that called the running task or actor method (its owner): a
# library actor (actorflow.util.PoolActor) tells its callers apart by it.
current_caller: contextvars.ContextVar[str] = contextvars.ContextVar(
    "actorflow_current_caller", default=""
)

# The placement group the running task was placed in (scheduling_strategies' wire form), so
# that get_current_placement_group() finds it and child tasks can be captured into it.
current_placement_group_wire: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "actorflow_current_placement_group", default=None
)


# Blocking calls made on a thread that runs an event loop (set by CoreWorker): refused only on
# actorflow's runtime loop, where the value would arrive (callbacks actorflow runs there), unless
# strict. Async actors' and async tasks' code runs on a loop of its own (user_loop.py).
_blocking_policy: dict[str, object] = {"runtime_loop": None, "strict": False, "warned": False}


def configure_blocking(runtime_loop: asyncio.AbstractEventLoop, strict: bool) -> None:
    _blocking_policy.update(runtime_loop=runtime_loop, strict=strict)


def check_not_in_event_loop(
    what: str, instead: str = "", ready: Callable[[], bool] | None = None
) -> None:
    """A blocking call on a thread whose event loop is running (as Ray): allowed with a warning
    (once per process), blocking that loop until the value is here, on any loop but the
    runtime's (a driver's own loop; the user loop of async actors and async tasks), since the
    runtime loop runs on a thread of its own; refused on the runtime loop itself (a done
    callback actorflow runs there), unless the value is already here (ready() says so), and
    everywhere with the strict setting (ACTORFLOW_STRICT_ASYNCIO_BLOCKING=1). instead says
    what to await."""
    loop = asyncio._get_running_loop()  # no exception raised and caught per call
    if loop is None:
        return
    instead = instead or (
        "`await ref` (or `await asyncio.gather(*refs)` / `await asyncio.wait(...)`)"
    )
    own_loop = loop is _blocking_policy["runtime_loop"]
    if not _blocking_policy["strict"] and (not own_loop or (ready is not None and ready())):
        if not _blocking_policy["warned"]:
            _blocking_policy["warned"] = True
            logger.warning(
                "%s() blocks the running asyncio event loop (at %s): use %s instead inside "
                "async code (this warning is shown once)",
                what,
                _call_site(),
                instead,
            )
        return
    where = (
        "this thread runs actorflow's runtime event loop (a callback actorflow runs there), "
        "the loop that would deliver the value"
        if own_loop and not _blocking_policy["strict"]
        else "this thread is running an asyncio event loop"
    )
    raise errors.AsyncioContextError(
        f"{what}() blocks, and {where}: use {instead} instead inside async code"
    )


def _call_site() -> str:
    """file:line of the first frame outside actorflow (the user's call)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("actorflow"):
        frame = frame.f_back  # type: ignore[assignment]
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


class Blocking:
    """The worker process's hooks for a task thread that blocks: while it waits, its CPU is
    given back to the node (set by worker.main; None in a driver)."""

    def __init__(self) -> None:
        self.on_blocked: Callable[[], None] | None = None
        self.on_unblocked: Callable[[], None] | None = None

    @contextlib.contextmanager
    def blocked(self, only_in_a_task: bool = True) -> Iterator[None]:
        """While the caller waits; a driver's own threads and (with only_in_a_task) threads
        outside a task keep their CPU."""
        blocked = self.on_blocked is not None and (
            not only_in_a_task or current_task_id.get() is not None
        )
        if blocked:
            self.on_blocked()  # type: ignore[misc]
        try:
            yield
        finally:
            if blocked:
                self.on_unblocked()  # type: ignore[misc]
