"""Watching an actor: its state changes, delivered by the GCS as they happen.

    async for event in actorflow.watch(handle):      # or `for event in ...` in sync code
        print(event.state, event.cause)               # ALIVE, RESTARTING, DEAD (then it ends)

    watch = actorflow.watch(handle, callback=on_event)   # on_event(event), sync or async
    watch.stop()

The first event is the actor's state when the watch starts; a dead or unknown actor gives one
DEAD event at once and the watch ends. Events come from a long poll on the GCS's actor table
(which keeps the recent changes of each actor, so a slow watcher still sees a RESTARTING that
was quickly followed by ALIVE). Supervisors are built on this (actorflow.supervision).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actorflow._private.protocol.actors import WatchActor
from actorflow._private.worker import context
from actorflow._private.worker.task_context import check_not_in_event_loop
from actorflow.exceptions import RuntimeNotInitializedError

logger = logging.getLogger("actorflow.watch")

PENDING, ALIVE, RESTARTING, DEAD = "PENDING", "ALIVE", "RESTARTING", "DEAD"


@dataclass(frozen=True)
class ActorEvent:
    """One state of a watched actor."""

    actor_id: str
    state: str  # PENDING, ALIVE, RESTARTING or DEAD
    restarts: int  # how many times it has been restarted so far
    cause: str  # why it is RESTARTING or DEAD ("" otherwise), for people
    # The same for code: "normal" (exit_actor() or a graceful terminate), "killed"
    # (actorflow.kill()), "crashed" (its process died), "start_failed" (its constructor raised
    # or it could not be placed), "node_died", "owner_died", "unknown" (no such actor), or "".
    kind: str
    node_id: str  # where it runs or ran ("" before it was placed)
    name: str  # its name, if it has one
    version: int  # grows with every change
    time: float  # when the GCS saw the change (time.time())

    @property
    def dead(self) -> bool:
        return self.state == DEAD


def _actor_id(actor: Any) -> str:
    actor_id = getattr(actor, "_actor_id", actor)
    if not isinstance(actor_id, str) or not actor_id:
        raise TypeError(
            f"watch() takes an actor handle (or an actor id), not {type(actor).__name__}"
        )
    return actor_id


class ActorWatch:
    """An actor's state changes: iterate it (async or sync), or give watch() a callback."""

    def __init__(self, actor: Any) -> None:
        core = context.core_or_none()
        if core is None:
            raise RuntimeNotInitializedError("call actorflow.init() before watching an actor")
        self._core = core
        self.actor_id = _actor_id(actor)
        self._known = -1
        self._buffer: deque[ActorEvent] = deque()
        self._ended = False
        self._stopped = False
        self._callback_task: asyncio.Future | None = None

    async def _fetch(self) -> None:
        rows = await self._core.request_from_any_loop(
            self._core.gcs_address, "actors", "watch_actor", WatchActor(self.actor_id, self._known)
        )
        for row in rows:
            if row["version"] > self._known or self._known < 0:
                self._known = max(self._known, row["version"])
                self._buffer.append(ActorEvent(**{"kind": "", **row}))

    def __aiter__(self) -> ActorWatch:
        return self

    async def __anext__(self) -> ActorEvent:
        while not self._buffer:
            if self._ended or self._stopped:
                raise StopAsyncIteration
            await self._fetch()
        event = self._buffer.popleft()
        if event.dead:
            self._ended = True
            self._buffer.clear()
        return event

    def __iter__(self) -> ActorWatch:
        check_not_in_event_loop("iterating a watch", "`async for event in watch`")
        return self

    def __next__(self) -> ActorEvent:
        async def step() -> ActorEvent:
            return await self.__anext__()

        try:
            return asyncio.run_coroutine_threadsafe(step(), self._core.runtime.loop).result()
        except StopAsyncIteration:
            raise StopIteration from None

    def stop(self) -> None:
        """No more events (a callback watch stops calling back)."""
        self._stopped = True
        task = self._callback_task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)

    def _start_callback(self, callback: Callable[[ActorEvent], Awaitable[None] | None]) -> None:
        async def deliver() -> None:
            async for event in self:
                try:
                    result = callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("actor watch callback failed on %s", event)

        def start() -> None:
            self._callback_task = asyncio.ensure_future(deliver())

        loop = self._callback_loop()
        if loop is asyncio._get_running_loop():
            start()
        else:
            asyncio.run_coroutine_threadsafe(_call(start), loop).result()

    def _callback_loop(self) -> asyncio.AbstractEventLoop:
        """Where callbacks run: in an async actor or async task (its sync constructor too) the
        loop that runs its code, so they may touch its state; elsewhere the runtime loop."""
        core = self._core
        running = asyncio._get_running_loop()
        if core.mode == "worker" and not core.on_loop_thread():
            if running is not None:
                return running
            if core.extensions.get("async_actor"):
                return core.extensions["actor_loop"]()
        return core.runtime.loop


async def _call(fn: Callable[[], None]) -> None:
    fn()


def watch(
    actor: Any,
    callback: Callable[[ActorEvent], Awaitable[None] | None] | None = None,
) -> ActorWatch:
    """Watch an actor's state changes (ALIVE, RESTARTING, DEAD with the cause).

    Without a callback, iterate the result with ``async for`` (from any event loop, including
    an async actor's) or ``for`` (from sync code). With a callback, it is called with each
    event on actorflow's runtime loop thread, or, when watch() is called in an async actor (its
    constructor too) or async task, on the loop that runs their code (an ``async def`` callback
    is awaited there): keep it short and never block in it. The watch ends after the DEAD
    event, or on ``stop()``.
    """
    handle = ActorWatch(actor)
    if callback is not None:
        handle._start_callback(callback)
    return handle
