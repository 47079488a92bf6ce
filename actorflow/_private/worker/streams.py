"""Streaming generator tasks, owner side: items arrive one by one, readers wait for the next.

Item i of task T is object ``(T, i + 1)``. If the generator fails, its error becomes the item
after the last one produced, so the reader gets it from the next ``get``, as in Ray.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from actorflow._private import errors, ids
from actorflow._private.ownership.table import ObjectTable
from actorflow._private.worker.task_context import Blocking


class _Stream:
    __slots__ = ("produced", "finished", "waiters")

    def __init__(self) -> None:
        self.produced = 0
        self.finished = False
        self.waiters: list[Callable[[], None]] = []


class StreamTable:
    def __init__(
        self, objects: ObjectTable, set_object: Callable[[bytes, list], None], blocking: Blocking
    ) -> None:
        self._objects = objects
        self._set_object = set_object
        self._blocking = blocking
        self._lock = threading.Lock()
        self._streams: dict[bytes, _Stream] = {}

    def open(self, task_id: bytes) -> None:
        with self._lock:
            self._streams[task_id] = _Stream()

    def item(self, task_id: bytes, index: int, wire: list) -> None:
        """Loop thread: item number index of the stream arrived."""
        obj_id = ids.object_id(task_id, index + 1)
        with self._lock:
            stream = self._streams.get(task_id)
            if stream is not None and index < stream.produced:
                return  # a retried generator replays items the reader already has: keep the first
        self._set_object(obj_id, wire)
        with self._lock:
            stream = self._streams.get(task_id)
            if stream is None:  # the reader dropped the generator: nobody will take it
                self._objects.discard_if_unreferenced(obj_id)
                return
            stream.produced = max(stream.produced, index + 1)
            waiters, stream.waiters = stream.waiters, []
        for wake in waiters:
            wake()

    def finish(self, task_id: bytes, error_wire: list | None) -> None:
        """Loop thread: the generator ended, with error_wire if it failed."""
        with self._lock:
            stream = self._streams.get(task_id)
            if stream is None:
                return
            if error_wire is not None:
                self._set_object(ids.object_id(task_id, stream.produced + 1), error_wire)
                stream.produced += 1
            stream.finished = True
            waiters, stream.waiters = stream.waiters, []
        for wake in waiters:
            wake()

    def _ready(self, task_id: bytes, index: int, wake: Callable[[], None] | None) -> bool | None:
        """True: item index exists; False: the stream ended before it; None: registered wake."""
        with self._lock:
            stream = self._streams.get(task_id)
            if stream is None or index < stream.produced:
                return stream is not None
            if stream.finished:
                return False
            if wake is not None:
                stream.waiters.append(wake)
            return None

    def has_next(self, task_id: bytes, index: int, wake: Callable[[], None] | None = None) -> bool:
        """Whether reading item index would not block (it exists, or the stream ended); if not
        and wake is given, wake() is called once it would not."""
        return self._ready(task_id, index, wake) is not None

    def wait_next(self, task_id: bytes, index: int, timeout: float | None) -> bool:
        """Block until item index exists (True) or the stream ended without it (False)."""
        found = self._ready(task_id, index, None)
        if found is not None:
            return found
        waker = threading.Lock()
        waker.acquire()
        found = self._ready(task_id, index, waker.release)
        if found is not None:
            return found
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._blocking.blocked(only_in_a_task=False):
            while True:  # a wake-up is a hint, not an answer: look again until there is one
                left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
                if not waker.acquire(timeout=left):
                    raise errors.GetTimeoutError(
                        f"no next item of the generator within {timeout} s"
                    )
                found = self._ready(task_id, index, waker.release)
                if found is not None:
                    return found

    async def wait_next_async(self, task_id: bytes, index: int) -> bool:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(settle)

        while True:  # a wake-up is a hint, not an answer: look again until there is one
            found = self._ready(task_id, index, wake)
            if found is not None:
                return found
            await future
            future = loop.create_future()

    def is_finished(self, task_id: bytes) -> bool:
        with self._lock:
            stream = self._streams.get(task_id)
            return stream is None or stream.finished

    def close(self, task_id: bytes, consumed: int) -> None:
        """The reader is gone: forget the stream and the items nobody took."""
        with self._lock:
            stream = self._streams.pop(task_id, None)
        if stream is None:
            return
        for index in range(consumed, stream.produced):
            self._objects.discard_if_unreferenced(ids.object_id(task_id, index + 1))
