"""Queue: a first-in first-out queue held by an actor, with Ray's ``ray.util.queue`` API.

Any process of the cluster can use a Queue: pass it to tasks and actors like any value (it
travels as its actor handle and maxsize). Every method has a blocking form and, for ``put`` and
``get``, an async form (``await q.get_async()``) for async code.

The actor is an async actor holding an ``asyncio.Queue``: a ``get`` waiting for an item, or a
``put`` waiting for room, is a pending coroutine there and never holds up other calls.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterable
from typing import Any

import actorflow
from actorflow._private.worker.task_context import check_not_in_event_loop
from actorflow.object_ref import ObjectRef

__all__ = ["Empty", "Full", "Queue"]


class Empty(queue.Empty):
    """get on an empty queue, without blocking or after its timeout."""


class Full(queue.Full):
    """put on a full queue, without blocking or after its timeout."""


class Queue:
    """A FIFO queue in the cluster.

    Args:
        maxsize: the most items it holds; 0 (or less) means no limit.
        actor_options: options for the queue's actor, as for ``.options(...)`` of an actor
            class (e.g. ``{"name": "jobs"}`` or ``{"num_cpus": 0}``).

    >>> q = Queue(maxsize=2)
    >>> q.put(1); q.put(2)
    >>> q.get(), q.get()
    (1, 2)
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {maxsize!r}")
        self.maxsize = maxsize
        actor_class = actorflow.remote(_QueueActor)
        if actor_options:
            actor_class = actor_class.options(**actor_options)
        self.actor: Any = actor_class.remote(maxsize)

    @classmethod
    def _from_actor(cls, actor: Any, maxsize: int) -> Queue:
        q = cls.__new__(cls)
        q.actor = actor
        q.maxsize = maxsize
        return q

    def __reduce__(self) -> Any:
        return (Queue._from_actor, (self.actor, self.maxsize))

    def __repr__(self) -> str:
        return f"Queue(maxsize={self.maxsize}, actor={self.actor!r})"

    def _handle(self) -> Any:
        if self.actor is None:
            raise RuntimeError("this Queue was shut down")
        return self.actor

    # -- size -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return actorflow.get(self._handle().qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        return actorflow.get(self._handle().empty.remote())

    def full(self) -> bool:
        return actorflow.get(self._handle().full.remote())

    # -- put and get: each makes the call (_*_call) then reads its reply (_*_reply) -------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add item at the end. If the queue is full: with block=False raise Full at once;
        otherwise wait for room, up to timeout seconds (None: no limit), then raise Full."""
        check_not_in_event_loop("Queue.put", "`await queue.put_async(...)`")
        _put_reply(actorflow.get(self._put_call(item, block, timeout)))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """``put`` for async code."""
        _put_reply(await self._put_call(item, block, timeout))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the first item. If the queue is empty: with block=False raise Empty
        at once; otherwise wait for an item, up to timeout seconds (None: no limit), then raise
        Empty."""
        check_not_in_event_loop("Queue.get", "`await queue.get_async(...)`")
        return _get_reply(actorflow.get(self._get_call(block, timeout)))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for async code."""
        return _get_reply(await self._get_call(block, timeout))

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add every item, in order, in one call; raise Full (adding none) if they do not all
        fit."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        items = list(items)
        if not actorflow.get(self._handle().put_nowait_batch.remote(items)):
            raise Full(
                f"Cannot add {len(items)} items to a queue of maxsize {self.maxsize}: "
                f"not enough room"
            )

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return num_items items, in order, in one call; raise Empty (removing none)
        if the queue holds fewer."""
        if isinstance(num_items, bool) or not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        items = actorflow.get(self._handle().get_nowait_batch.remote(num_items))
        if items is None:
            raise Empty(f"Cannot get {num_items} items from the queue: it holds fewer")
        return items

    def _put_call(self, item: Any, block: bool, timeout: float | None) -> ObjectRef:
        handle = self._handle()
        if not block:
            return handle.put.remote(item, 0)
        _check_timeout(timeout)
        return handle.put.remote(item, timeout)

    def _get_call(self, block: bool, timeout: float | None) -> ObjectRef:
        handle = self._handle()
        if not block:
            return handle.get.remote(0)
        _check_timeout(timeout)
        return handle.get.remote(timeout)

    # -- the end --------------------------------------------------------------------------------

    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """End the queue's actor; items still in it are lost, and calls waiting on it (here or
        elsewhere) fail with ActorDiedError. force=False asks the actor to exit and kills it if
        it has not within grace_period_s seconds; force=True kills it at once."""
        if self.actor is not None:
            if force:
                actorflow.kill(self.actor, no_restart=True)
            else:
                done = self.actor.__actorflow_terminate__.remote()
                ready, _ = actorflow.wait([done], timeout=grace_period_s)
                if not ready:
                    actorflow.kill(self.actor, no_restart=True)
        self.actor = None


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


def _put_reply(ok: bool) -> None:
    if not ok:
        raise Full


def _get_reply(reply: tuple[bool, Any]) -> Any:
    ok, item = reply
    if not ok:
        raise Empty
    return item


class _QueueActor:
    """The actor behind a Queue. Every method is async, so all of them run on the actor's event
    loop, the one thread that may touch the asyncio.Queue. Outcomes are returned, not raised
    (cheaper than an error, and the caller raises a plain Empty/Full)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.queue.qsize()

    async def empty(self) -> bool:
        return self.queue.empty()

    async def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> bool:
        """Add item, waiting up to timeout (0: not at all) for room; whether it was added."""
        if not self.queue.full():
            self.queue.put_nowait(item)
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def get(self, timeout: float | None = None) -> tuple[bool, Any]:
        """(True, first item), waiting up to timeout (0: not at all); (False, None) if none."""
        if not self.queue.empty():
            return True, self.queue.get_nowait()
        if timeout is not None and timeout <= 0:
            return False, None
        try:
            return True, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return False, None

    async def put_nowait_batch(self, items: list[Any]) -> bool:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return False
        for item in items:
            self.queue.put_nowait(item)
        return True

    async def get_nowait_batch(self, num_items: int) -> list[Any] | None:
        if num_items > self.queue.qsize():
            return None
        return [self.queue.get_nowait() for _ in range(num_items)]
