"""What the running code is doing: the task it runs for, and whether it may block."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Iterator

from actorflow._private import errors

# The task this code runs for (None in a driver's own code): parent of tasks it submits.
current_task_id: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "actorflow_current_task", default=None
)
# Its function or method name, for the prefix of forwarded output.
current_task_name: contextvars.ContextVar[str] = contextvars.ContextVar(
    "actorflow_current_task_name", default=""
)

# The placement group the running task was placed in (scheduling_strategies' wire form), so
# that get_current_placement_group() finds it and child tasks can be captured into it.
current_placement_group_wire: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "actorflow_current_placement_group", default=None
)


def check_not_in_event_loop(what: str, instead: str = "") -> None:
    """Blocking calls refuse a thread whose event loop is running; instead says what to await."""
    if asyncio._get_running_loop() is None:  # no exception raised and caught per call
        return
    instead = instead or (
        "`await ref` (or `await asyncio.gather(*refs)` / `await asyncio.wait(...)`)"
    )
    raise errors.AsyncioContextError(
        f"{what}() blocks, and this thread is running an asyncio event loop: use {instead} "
        f"instead inside async code"
    )


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
