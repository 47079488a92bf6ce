"""ObjectRef: a reference to a value that exists, or will, somewhere in the cluster.

A ref names its object and its owner (the process that made it). It is awaitable from any event
loop, and ``future()`` gives a ``concurrent.futures.Future``. Cancelling an asyncio task that is
awaiting a ref cancels the remote task behind it. Public as ``actorflow.ObjectRef`` (pickles name
``actorflow.object_ref``, as before the move).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from actorflow._private import errors, ids, serialization
from actorflow._private.worker import context
from actorflow._private.worker.task_context import check_not_in_event_loop

PUBLIC_MODULE = "actorflow.object_ref"


class ObjectRef:
    __slots__ = ("id", "owner", "_tracked", "__weakref__")

    def __init__(self, obj_id: bytes, owner: str) -> None:
        self.id = obj_id
        self.owner = owner
        core = context.core_or_none()
        self._tracked = core is not None
        if core is not None:
            core.add_local_ref(obj_id, owner, lambda: _lost_wire(obj_id))

    def __del__(self) -> None:
        if self._tracked:
            core = context.core_or_none()
            if core is not None:
                core.objects.release_ref(self.id)

    def __reduce__(self) -> Any:
        serialization.note_ref_pickled(self)
        return (ObjectRef, (self.id, self.owner))

    def hex(self) -> str:
        return self.id.hex()

    def task_id(self) -> str:
        return ids.task_id_of(self.id).hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"ObjectRef({self.id.hex()})"

    def __await__(self) -> Generator[Any, None, Any]:
        return _core().get_async(self).__await__()

    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future that gets the value (or the error)."""
        return _core().waiting.future(self)

    def as_future(self) -> asyncio.Future:
        """An asyncio future on the running loop."""
        return asyncio.ensure_future(_core().get_async(self))


class ObjectRefGenerator:
    """What calling a remote generator returns: an iterator of ObjectRefs, one per item, each
    available as soon as the worker yields it. Use ``for``/``next`` or ``async for``."""

    def __init__(self, task_id: bytes, owner: str) -> None:
        self._task_id = task_id
        self._owner = owner
        self._next = 0

    def __iter__(self) -> Iterator[ObjectRef]:
        return self

    def __next__(self) -> ObjectRef:
        return self._next_sync(None)

    def next_ref(self, timeout: float | None = None) -> ObjectRef:
        return self._next_sync(timeout)

    def _next_sync(self, timeout: float | None) -> ObjectRef:
        check_not_in_event_loop("ObjectRefGenerator.__next__", "`async for`")
        if not _core().streams.wait_next(self._task_id, self._next, timeout):
            raise StopIteration
        return self._take()

    def __aiter__(self) -> AsyncIterator[ObjectRef]:
        return self

    async def __anext__(self) -> ObjectRef:
        if not await _core().streams.wait_next_async(self._task_id, self._next):
            raise StopAsyncIteration
        return self._take()

    def _take(self) -> ObjectRef:
        ref = ObjectRef(ids.object_id(self._task_id, self._next + 1), self._owner)
        self._next += 1
        return ref

    def is_finished(self) -> bool:
        return _core().streams.is_finished(self._task_id)

    def task_id(self) -> str:
        return self._task_id.hex()

    def __del__(self) -> None:
        core = context.core_or_none()
        if core is not None:
            core.streams.close(self._task_id, self._next)

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"


def _lost_wire(obj_id: bytes) -> list:
    return serialization.serialize_error(
        errors.ObjectLostError(
            f"object {obj_id.hex()} is not held by its owner: it was freed (every ref to it was "
            f"dropped) or never existed"
        )
    )


def _core() -> Any:
    return context.ensure_core()


ObjectRef.__module__ = ObjectRefGenerator.__module__ = PUBLIC_MODULE
