"""ObjectRef: a reference to a value that exists, or will, somewhere in the cluster.

A ref names its object and its owner (the process that made it). It is awaitable from any event
loop, and ``future()`` gives a ``concurrent.futures.Future``. Cancelling an asyncio task that is
awaiting a ref cancels the remote task behind it. Public as ``actorflow.ObjectRef`` (pickles name
``actorflow.object_ref``, as before the move).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import Any, Generic, TypeVar

from actorflow._private import errors, ids, serialization
from actorflow._private.worker import context
from actorflow._private.worker.task_context import check_not_in_event_loop

PUBLIC_MODULE = "actorflow.object_ref"

T = TypeVar("T")


class ObjectRef(Generic[T]):
    """A ref to a value of type T: ``ObjectRef[int]`` for type checkers (awaiting it gives an
    int); at run time every ref is the same class."""

    # _settled: this ref's wire once a done callback has seen it (pulled here if it was on
    # another node); _callbacks: (fn, handle) of done callbacks not yet run.
    __slots__ = ("id", "owner", "_tracked", "_settled", "_callbacks", "__weakref__")

    def __init__(self, obj_id: bytes, owner: str = "") -> None:
        core = context.core_or_none()
        if not owner:
            # ObjectRef(id_bytes), Ray's form, names no owner: the object is looked up in this
            # process, which answers ObjectLostError if it does not hold it.
            if not isinstance(obj_id, bytes):
                self._tracked: bool = False  # __del__ still runs on this half-made ref
                raise TypeError(f"ObjectRef() takes the id's bytes, not {type(obj_id).__name__}")
            owner = core.address if core is not None else ""
        self.id = obj_id
        self.owner = owner
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

    def __await__(self) -> Generator[Any, None, T]:
        return _core().get_async(self).__await__()

    def future(self) -> concurrent.futures.Future[T]:
        """A concurrent.futures.Future that gets the value (or the error)."""
        return _core().waiting.future(self)

    def as_future(self) -> asyncio.Future:
        """An asyncio future on the running loop. Cancelling it stops this wait only; the task
        goes on (as in Ray); cancel the task with actorflow.cancel(ref)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(ref: ObjectRef) -> None:
            if future.done():
                return
            try:
                future.set_result(ref.result())
            except BaseException as exc:
                future.set_exception(exc)

        self.add_done_callback(settle)
        return future

    # -- the asyncio future protocol, as far as asyncio.wait and its friends use it: refs go
    # straight into asyncio.wait(refs). asyncio.isfuture(ref) stays False, so ensure_future and
    # gather still run a ref in a task of its own (cancelling that task cancels the remote work).

    def done(self) -> bool:
        """Whether the value (or the error) is here."""
        return self._wire() is not None

    def cancelled(self) -> bool:
        return False  # a cancelled task's ref holds a TaskCancelledError, raised by result()

    def result(self) -> T:
        """The value now (the task's error raised); InvalidStateError if not ready yet."""
        wire = self._wire()
        if wire is None:
            raise asyncio.InvalidStateError(f"{self!r} is not ready yet")
        if not hasattr(self, "_settled") and _core().shared.is_remote(wire):
            return _core().get(self)  # on another node: pulled here first
        return value_of(wire)

    def exception(self) -> BaseException | None:
        """The task's error, or None if it succeeded; InvalidStateError if not ready yet."""
        try:
            self.result()
        except asyncio.InvalidStateError:
            raise
        except BaseException as exc:
            return exc
        return None

    def add_done_callback(self, fn: Callable[[ObjectRef], Any], *, context: Any = None) -> None:
        """fn(ref) once the value is ready: on the event loop running here, or, called from
        outside any loop, on actorflow's own loop thread (keep it short)."""
        loop = asyncio._get_running_loop()

        def arrived(wire: list | BaseException) -> None:  # on the runtime loop
            self._settled = wire if not isinstance(wire, BaseException) else _error_wire(wire)
            self._drop_callback(fn)
            if loop is None:
                fn(self)
            else:
                loop.call_soon_threadsafe(fn, self, context=context)

        handle = _core().waiting.on_ready(self, arrived)
        if not hasattr(self, "_callbacks"):
            self._callbacks: list = []
        self._callbacks.append((fn, handle))

    def remove_done_callback(self, fn: Callable[[ObjectRef], Any]) -> int:
        removed = self._drop_callback(fn)
        for handle in removed:
            _core().waiting.forget(self, handle)
        return len(removed)

    def _drop_callback(self, fn: Callable[[ObjectRef], Any]) -> list:
        callbacks = getattr(self, "_callbacks", None) or []
        removed = [h for f, h in callbacks if f is fn or f == fn]
        self._callbacks = [(f, h) for f, h in callbacks if not (f is fn or f == fn)]
        return removed

    def _on_completed(self, callback: Callable[[Any], Any]) -> None:
        """Ray's hook: callback(value), or callback(error) if the task failed, once ready."""

        def settled(ref: ObjectRef) -> None:
            callback(ref.exception() or ref.result())

        self.add_done_callback(settled)

    def _wire(self) -> list | None:
        settled = getattr(self, "_settled", None)
        return settled if settled is not None else _core().waiting.local_wire(self)


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

    def _next_sync(
        self, timeout: float | None = None, *, timeout_s: float | None = None
    ) -> ObjectRef:
        """The next ref, waiting up to timeout seconds (timeout_s: Ray's spelling)."""
        timeout = timeout_s if timeout is None else timeout
        check_not_in_event_loop(
            "ObjectRefGenerator.__next__",
            "`async for`",
            ready=lambda: _core().streams.has_next(self._task_id, self._next),
        )
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
        ref: ObjectRef[Any] = ObjectRef(ids.object_id(self._task_id, self._next + 1), self._owner)
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


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task's ref: the refs of the items its generator
    yielded, iterated once each (as Ray's)."""

    def __init__(self, refs: Iterable[ObjectRef]) -> None:
        self._refs = collections.deque(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        while self._refs:
            yield self._refs.popleft()

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


def value_of(wire: list) -> Any:
    """The value a wire holds; an error is raised (a task's error as an instance of its cause)."""
    value = serialization.deserialize(wire)
    if serialization.is_error(wire):
        if isinstance(value, errors.TaskError):
            raise value.as_instanceof_cause()
        raise value
    return value


def _error_wire(error: BaseException) -> list:
    return serialization.serialize_error(error)


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
DynamicObjectRefGenerator.__module__ = PUBLIC_MODULE
