"""Waiting for values: ``get``, ``wait`` and ``await ref``, from user threads and any loop.

A blocking get registers a callback per missing value on the runtime loop and sleeps on a lock
until enough have arrived (or the first error); an awaited ref gets a future on the awaiting
loop. Values on another node are pulled into this node's store before they are read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.ownership.table import ObjectTable
from actorflow._private.runtime import Runtime
from actorflow._private.worker.object_ref import ObjectRef, ObjectRefGenerator, value_of
from actorflow._private.worker.shared_objects import SharedObjects
from actorflow._private.worker.streams import StreamTable
from actorflow._private.worker.task_context import Blocking, check_not_in_event_loop


class Waiting:
    def __init__(
        self,
        objects: ObjectTable,
        runtime: Runtime,
        shared: SharedObjects,
        blocking: Blocking,
        resolve: Callable[[Any, Callable[[list], None]], None],
        cancel: Callable[..., None],
        streams: StreamTable,
    ) -> None:
        self._objects = objects
        self._runtime = runtime
        self._shared = shared
        self._blocking = blocking
        self._resolve = resolve  # resolve(ref, callback): callback(wire) on the runtime loop
        self._cancel = cancel
        self._streams = streams

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        check_not_in_event_loop("actorflow.get", ready=lambda: self._all_here(refs))
        if isinstance(refs, ObjectRef):
            return value_of(self._wait_wires([refs], timeout, "get")[0])
        if not isinstance(refs, (list, tuple)):
            raise TypeError(
                f"actorflow.get() takes an ObjectRef or a list of ObjectRefs, not "
                f"{type(refs).__name__}"
            )
        for ref in refs:
            if not isinstance(ref, ObjectRef):
                raise TypeError(
                    f"actorflow.get() got a {type(ref).__name__} in its list; "
                    f"every element must be an ObjectRef"
                )
        wires = self._wait_wires(list(refs), timeout, "get")
        self._shared.prefetch(wires)  # objects on other nodes: pulled at once, not one by one
        return [value_of(w) for w in wires]

    def _all_here(self, refs: Any) -> bool:
        """Whether every value is in this process or this node's store (reading it now would
        not wait for a message)."""
        refs = [refs] if isinstance(refs, ObjectRef) else refs
        for ref in refs if isinstance(refs, (list, tuple)) else ():
            wire = self._objects.get_wire(ref.id) if isinstance(ref, ObjectRef) else None
            if wire is None or self._shared.is_remote(wire):
                return False
        return True

    def _wait_wires(self, refs: list, timeout: float | None, what: str) -> list:
        """Block until every ref has a value, or one is an error; return the wires."""
        wires: list = [self._objects.get_wire(r.id) for r in refs]
        for wire in wires:
            if wire is not None and serialization.is_error(wire):
                raise value_of(wire)
        missing = [i for i, w in enumerate(wires) if w is None]
        if not missing:
            return wires
        waiter = _Waiter(needed=len(missing), wake_on_error=True)
        callbacks = []
        for index in missing:

            def arrived(wire: list, index: int = index) -> None:
                wires[index] = wire
                waiter.arrived(index, wire)

            callbacks.append((refs[index], arrived))
            self._runtime.call_soon(self._resolve, refs[index], arrived)
        if not self._block(waiter, timeout):
            for ref, cb in callbacks:
                self._objects.remove_callback(ref.id, cb)
            raise errors.GetTimeoutError(
                f"actorflow.{what}() timed out after {timeout} s: {waiter.left} of {len(refs)} "
                f"objects not ready"
            )
        if waiter.error is not None:
            raise value_of(waiter.error)
        return wires

    def _block(self, waiter: _Waiter, timeout: float | None) -> bool:
        """Wait on a user thread; a task that blocks gives its CPU back meanwhile."""
        with self._blocking.blocked():
            return waiter.wait(timeout)

    def wait(
        self,
        refs: list,
        num_returns: int = 1,
        timeout: float | None = None,
        fetch_local: bool = True,
    ) -> tuple[list, list]:
        """Refs and streaming generators; a generator is ready when its next item is (or it
        has ended), as in Ray."""
        refs = self._check_wait_args(refs, num_returns)
        check_not_in_event_loop(
            "actorflow.wait",
            ready=lambda: timeout == 0 or sum(map(self._is_ready, refs)) >= num_returns,
        )
        if not refs:
            return [], []
        ready_keys = {_key(r) for r in refs if self._is_ready(r)}
        if len(ready_keys) < num_returns and timeout != 0:
            waiter = _Waiter(needed=num_returns - len(ready_keys), wake_on_error=False)
            callbacks = []
            for ref in refs:
                key = _key(ref)
                if key in ready_keys:
                    continue
                if isinstance(ref, ObjectRefGenerator):
                    if self._streams.has_next(
                        ref._task_id, ref._next, partial(waiter.arrived, key, None)
                    ):
                        waiter.arrived(key, None)
                    continue

                def arrived(wire: list, key: Any = key) -> None:
                    waiter.arrived(key, wire)

                callbacks.append((ref, arrived))
                self._runtime.call_soon(self._resolve, ref, arrived)
            self._block(waiter, timeout)
            for ref, cb in callbacks:
                self._objects.remove_callback(ref.id, cb)
            ready_keys |= waiter.keys()
        ready = [r for r in refs if _key(r) in ready_keys][:num_returns]
        chosen = {id(r) for r in ready}
        return ready, [r for r in refs if id(r) not in chosen]

    def _is_ready(self, ref: Any) -> bool:
        if isinstance(ref, ObjectRefGenerator):
            return self._streams.has_next(ref._task_id, ref._next)
        return self._objects.get_wire(ref.id) is not None

    @staticmethod
    def _check_wait_args(refs: Any, num_returns: int) -> list:
        if isinstance(refs, (ObjectRef, ObjectRefGenerator)) or not isinstance(refs, (list, tuple)):
            raise TypeError("actorflow.wait() takes a list of ObjectRefs or ObjectRefGenerators")
        refs = list(refs)
        for ref in refs:
            if not isinstance(ref, (ObjectRef, ObjectRefGenerator)):
                raise TypeError(
                    f"actorflow.wait() got a {type(ref).__name__} in its list; "
                    f"every element must be an ObjectRef or an ObjectRefGenerator"
                )
        if not refs:
            return refs
        if len({_key(r) for r in refs}) != len(refs):
            raise ValueError("actorflow.wait() got the same ObjectRef twice")
        if not isinstance(num_returns, int) or num_returns < 1 or num_returns > len(refs):
            raise ValueError(
                f"num_returns must be between 1 and the number of refs "
                f"({len(refs)}), got {num_returns!r}"
            )
        return refs

    async def get_async(self, ref: Any) -> Any:
        """Await a ref's value from any event loop; cancelling the awaiter cancels the task."""
        wire = self._objects.get_wire(ref.id)
        if wire is None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            if loop is self._runtime.loop:

                def arrived(w: list) -> None:
                    if not future.done():
                        future.set_result(w)
            else:

                def arrived(w: list) -> None:
                    loop.call_soon_threadsafe(_resolve_future, future, w)

            self._runtime.call_soon(self._resolve, ref, arrived)
            try:
                wire = await future
            except asyncio.CancelledError:
                self._objects.remove_callback(ref.id, arrived)
                self._cancel(ref, force=False, recursive=True)
                raise
        if self._shared.is_remote(wire):  # on another node: pulled here before it is read
            wire = await self._shared.localize_any_loop(wire)
        return value_of(wire)

    def future(self, ref: Any) -> concurrent.futures.Future:
        """A concurrent.futures.Future that gets the value (or the error)."""
        result: concurrent.futures.Future = concurrent.futures.Future()

        def settle(wire: list | BaseException) -> None:
            if result.done():
                return
            try:
                if isinstance(wire, BaseException):
                    raise wire
                result.set_result(value_of(wire))
            except BaseException as exc:
                result.set_exception(exc)

        self.on_ready(ref, settle)
        return result

    def on_ready(
        self, ref: Any, callback: Callable[[list | BaseException], None]
    ) -> Callable[[list], None]:
        """callback(wire) on the runtime loop once ref's value is here (pulled into this node's
        store first if it is on another, without blocking the loop), or callback(error) if the
        pull fails. Returns the handle that forget() takes."""

        def arrived(wire: list) -> None:  # on the runtime loop
            if not self._shared.is_remote(wire):
                callback(wire)
                return
            pulled = asyncio.ensure_future(self._shared.localize(wire))

            def done(f: asyncio.Future) -> None:
                error = f.exception()
                callback(f.result() if error is None else error)

            pulled.add_done_callback(done)

        self._runtime.call_soon(self._resolve, ref, arrived)
        return arrived

    def forget(self, ref: Any, handle: Callable[[list], None]) -> None:
        """Drop a callback on_ready registered, if it has not run."""
        self._objects.remove_callback(ref.id, handle)

    def local_wire(self, ref: Any) -> list | None:
        """ref's wire if its value is ready (None if not)."""
        return self._objects.get_wire(ref.id)


class _Waiter:
    """Counts values arriving (on the runtime loop) and wakes one blocked user thread once
    enough have arrived, or at the first error when wake_on_error."""

    def __init__(self, needed: int, wake_on_error: bool) -> None:
        self.left = needed
        self.error: list | None = None
        self._wake_on_error = wake_on_error
        self._arrived: set = set()
        self._lock = threading.Lock()
        self._waker = threading.Lock()
        self._waker.acquire()
        self._woken = False

    def arrived(self, key: Any, wire: list | None) -> None:
        with self._lock:
            if key in self._arrived:
                return
            self._arrived.add(key)
            self.left -= 1
            failed = self._wake_on_error and wire is not None and serialization.is_error(wire)
            if failed and self.error is None:
                self.error = wire
            if (self.left <= 0 or failed) and not self._woken:
                self._woken = True
                self._waker.release()

    def wait(self, timeout: float | None) -> bool:
        return self._waker.acquire(timeout=-1 if timeout is None else max(0.0, timeout))

    def keys(self) -> set:
        with self._lock:
            return set(self._arrived)


def _key(ref: Any) -> Any:
    """What identifies a ref or a generator in a wait."""
    return ref.id if isinstance(ref, ObjectRef) else ("generator", ref._task_id)


def _resolve_future(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)
