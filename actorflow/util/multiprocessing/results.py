"""What ``Pool``'s asynchronous calls return: ``AsyncResult`` (``apply_async``), ``MapResult``
(``map_async``, ``starmap_async``) and ``IMapIterator`` (``imap``, ``imap_unordered``), with the
stdlib's ``multiprocessing.pool`` semantics.

Work reaches them in batches (one actor call each); the pool's result thread delivers each
batch's outcome with ``_deliver(batch, outcomes)``: one ``(ok, value)`` per item, ``value``
being the item's result or the exception it raised. Callbacks run on that thread, before the
result is marked ready, as in the stdlib.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterator
from multiprocessing import TimeoutError
from typing import Any

__all__ = ["AsyncResult", "IMapIterator", "MapResult"]

logger = logging.getLogger("actorflow.multiprocessing")

Outcome = tuple[bool, Any]  # (True, result) or (False, the exception)


class Batch:
    """One actor call: the items [start, start + count) of a result, run by one actor slot."""

    __slots__ = ("result", "start", "count", "slot", "ref")

    def __init__(self, result: Any, start: int, count: int, slot: Any) -> None:
        self.result = result
        self.start = start
        self.count = count
        self.slot = slot
        self.ref: Any = None


def _run_callback(callback: Callable[[Any], Any] | None, value: Any) -> None:
    if callback is None:
        return
    try:
        callback(value)
    except Exception:  # a failing callback must not stop the result thread
        logger.exception("a Pool callback raised; the result is still delivered")


class AsyncResult:
    """The result of ``apply_async`` (one item); the base of ``MapResult``."""

    def __init__(
        self,
        length: int,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> None:
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._values: list[Any] = [None] * length
        self._left = length
        self._success: bool | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        if length == 0:
            self._finish()

    def ready(self) -> bool:
        """Whether the call has completed (successfully or not)."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising; ValueError if it is not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return bool(self._success)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready or timeout seconds have passed."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; the exception the call raised is raised again (its original type), and
        ``multiprocessing.TimeoutError`` if it is not ready within timeout seconds."""
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError(f"the result was not ready within {timeout} s")
        if not self._success:
            assert self._error is not None
            raise self._error
        return self._value()

    def _value(self) -> Any:
        return self._values[0]

    def _deliver(self, batch: Batch, outcomes: list[Outcome]) -> None:
        with self._lock:
            if self._success is not None:
                return  # already failed: the stdlib keeps the first error only
            for offset, (ok, value) in enumerate(outcomes):
                if not ok:
                    self._success = False
                    self._error = value
                    break
                self._values[batch.start + offset] = value
            else:
                self._left -= batch.count
                if self._left > 0:
                    return
        self._finish()

    def _finish(self) -> None:
        if self._success is False:
            _run_callback(self._error_callback, self._error)
        else:
            self._success = True
            _run_callback(self._callback, self._value())
        self._event.set()

    def __repr__(self) -> str:
        state = "ready" if self.ready() else "pending"
        return f"<{type(self).__name__} {state} at {id(self):#x}>"


class MapResult(AsyncResult):
    """The result of ``map_async``/``starmap_async``: the list of results in input order. It
    is ready (and failed) as soon as one item raised, with that item's exception."""

    def _value(self) -> Any:
        return self._values


class IMapIterator:
    """The iterator ``imap`` (ordered) and ``imap_unordered`` return. ``next(timeout)`` raises
    ``multiprocessing.TimeoutError`` when no result came within timeout seconds; an item whose
    call raised raises that exception at its place (the iteration can go on after it)."""

    def __init__(self, ordered: bool) -> None:
        self._ordered = ordered
        self._cond = threading.Condition()
        self._by_index: dict[int, Outcome] = {}  # ordered: results that came early
        self._arrived: collections.deque[Outcome] = collections.deque()  # unordered
        self._next = 0  # ordered: the index to yield next
        self._yielded = 0
        self._length: int | None = None  # known once the input is exhausted
        self.on_take: Callable[[], None] | None = None  # the pool reads more input then

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._cond.wait_for(self._has_next, timeout):
                raise TimeoutError(f"no result came within {timeout} s")
            if self._length is not None and self._yielded >= self._length:
                raise StopIteration
            if self._ordered:
                ok, value = self._by_index.pop(self._next)
                self._next += 1
            else:
                ok, value = self._arrived.popleft()
            self._yielded += 1
        if self.on_take is not None:
            self.on_take()
        if not ok:
            raise value
        return value

    @property
    def taken(self) -> int:
        """How many results have been taken so far."""
        return self._yielded

    def _has_next(self) -> bool:
        if self._length is not None and self._yielded >= self._length:
            return True
        return self._next in self._by_index if self._ordered else bool(self._arrived)

    def _deliver(self, batch: Batch, outcomes: list[Outcome]) -> None:
        with self._cond:
            for offset, outcome in enumerate(outcomes):
                if self._ordered:
                    self._by_index[batch.start + offset] = outcome
                else:
                    self._arrived.append(outcome)
            self._cond.notify_all()

    def _set_length(self, length: int) -> None:
        with self._cond:
            self._length = length
            self._cond.notify_all()
