"""The event loop that user coroutines run on in a worker: async actors' methods (their plain
methods too) and ``async def`` tasks, on a thread of its own.

It is not the runtime loop, which does all of the process's I/O: a blocking ``get`` or
``wait`` in user async code blocks this loop only (the actor's other calls wait, as in Ray),
while the runtime loop goes on receiving the value it waits for. Started on the first async
call, so that workers of sync tasks and actors have no extra thread.

A call crosses from one loop to the other with call_soon_threadsafe both ways: libuv wakes
a loop once for all the calls handed to it before it runs them, so a burst of calls costs
one wake-up each way, not one per call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from actorflow._private.loop_thread import LoopThread


class UserLoop:
    def __init__(self, runtime_loop: asyncio.AbstractEventLoop) -> None:
        self._thread = LoopThread("actorflow-user")
        self._thread.start()
        self.loop = self._thread.loop
        self.thread_id = self._thread.thread_id
        self._runtime_loop = runtime_loop

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the user loop (any thread)."""
        self.loop.call_soon_threadsafe(fn, *args)

    async def wait_for_runtime_future(self, future: asyncio.Future) -> None:
        """Await, on the user loop, a future of the runtime loop (its result is then read
        from it directly)."""
        if future.done():
            return
        loop = self.loop
        mine = loop.create_future()

        def relay(_: asyncio.Future) -> None:  # on the runtime loop
            loop.call_soon_threadsafe(_settle_none, mine)

        self._runtime_loop.call_soon_threadsafe(future.add_done_callback, relay)
        await mine


def _settle_none(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class LazyUserLoop:
    """The process's user loop, started by whoever needs it first (any thread)."""

    def __init__(self, runtime_loop: asyncio.AbstractEventLoop) -> None:
        self._runtime_loop = runtime_loop
        self._loop: UserLoop | None = None
        self._lock = threading.Lock()

    def get(self) -> UserLoop:
        user_loop = self._loop
        if user_loop is None:
            with self._lock:
                if self._loop is None:
                    self._loop = UserLoop(self._runtime_loop)
                user_loop = self._loop
        return user_loop

    def started(self) -> UserLoop | None:
        return self._loop
