"""ActorPool: spread work over a fixed set of actors, with Ray's ``ray.util.ActorPool`` API.

``fn`` is always ``lambda actor, value: actor.method.remote(value)``: it starts the work on the
actor it is given and returns the ObjectRef of the result. An actor is busy from the call of
``fn`` until its result has been taken with one of the ``get_next*`` methods; values submitted
while every actor is busy wait in the pool and start, in order, as actors come back.

Every blocking method has an ``*_async`` twin for async code (``await pool.get_next_async()``,
``async for r in pool.map_async(fn, values)``) that waits without blocking the event loop. The
blocking ones behave like ``actorflow.get``/``wait``: on a thread whose event loop is running
they raise ``AsyncioContextError``. Both kinds share the bookkeeping below; only the way they
wait differs.

Where this differs from Ray's ActorPool (each a case where Ray raises or spins):
``get_next()`` after ``get_next_unordered()`` returns the oldest result still pending;
``get_next_unordered(ignore_if_timedout=True)`` skips the oldest pending result; ``map`` and
``map_unordered`` drop results not yet taken without waiting for them or raising their errors
(work already started still runs); ``fn`` must return an ObjectRef (TypeError otherwise);
``get_next_async`` raises ``StopAsyncIteration`` when nothing is pending.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import actorflow
from actorflow import exceptions
from actorflow._private.worker.task_context import check_not_in_event_loop
from actorflow.object_ref import ObjectRef

__all__ = ["ActorPool"]

_TIMEOUT_MSG = "Timed out waiting for result"


class _Task:
    """One submitted value: its position in submission order, its result ref, its actor."""

    __slots__ = ("index", "ref", "marker", "actor", "_future")

    def __init__(self, index: int, ref: ObjectRef | list[ObjectRef], actor: Any) -> None:
        self.index = index
        self.ref = ref  # one ref, or the refs of a call with several returns
        # What to wait on: a call's returns arrive together, so its first one stands for all.
        self.marker = ref[0] if isinstance(ref, list) else ref
        self.actor = actor
        self._future: concurrent.futures.Future | None = None

    def future(self) -> concurrent.futures.Future:
        """The result as a thread-safe future (made once). Waiting on it never cancels the
        remote call, unlike cancelling an ``await ref``."""
        if self._future is None:
            if isinstance(self.ref, list):
                self._future = _all_of([ref.future() for ref in self.ref])
            else:
                self._future = self.ref.future()
        return self._future


def _all_of(futures: list[concurrent.futures.Future]) -> concurrent.futures.Future:
    """A future of the list of the futures' results (or the first error)."""
    result: concurrent.futures.Future = concurrent.futures.Future()

    def settle(_: concurrent.futures.Future) -> None:
        if result.done() or not all(f.done() for f in futures):
            return
        try:
            result.set_result([f.result() for f in futures])
        except BaseException as exc:
            result.set_exception(exc)

    for future in futures:
        future.add_done_callback(settle)
    return result


def _check_progress(progress: object) -> None:
    if not isinstance(progress, (bool, str)):
        raise TypeError(f"progress must be a bool or a description, got {progress!r}")


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")


def _consume(future: asyncio.Future) -> None:
    """Mark a helper future's outcome as seen, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


class ActorPool:
    """A pool of actors; ``submit``/``map`` hand values to idle actors.

    >>> pool = ActorPool([Worker.remote(), Worker.remote()])
    >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))
    [2, 4, 6, 8]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle_actors: list[Any] = list(actors)
        # Submitted and started, not yet taken, by submission index (so in submission order).
        self._in_flight: dict[int, _Task] = {}
        # Submitted while no actor was idle: (fn, value), started first-in first-out.
        self._pending_submits: collections.deque[tuple[Callable[[Any, Any], Any], Any]] = (
            collections.deque()
        )
        self._next_task_index = 0

    # -- submitting -----------------------------------------------------------------------------

    def submit(self, fn: Callable[[Any, Any], ObjectRef], value: Any) -> None:
        """Run ``fn(actor, value)`` on an idle actor now, or when one comes back. Take the result
        with ``get_next()`` (submission order) or ``get_next_unordered()``."""
        if self._idle_actors:
            self._start(fn, value)
        else:
            self._pending_submits.append((fn, value))

    def _start(self, fn: Callable[[Any, Any], ObjectRef], value: Any) -> None:
        actor = self._idle_actors.pop()
        try:
            ref = fn(actor, value)
        except BaseException:
            self._idle_actors.append(actor)
            raise
        if isinstance(ref, (list, tuple)) and ref and all(isinstance(r, ObjectRef) for r in ref):
            ref = list(ref)  # a method with several returns
        elif not isinstance(ref, ObjectRef):
            self._idle_actors.append(actor)
            raise TypeError(
                f"ActorPool: fn(actor, value) must return the ObjectRef of an actor "
                f"method call (e.g. actor.method.remote(value)), got "
                f"{type(ref).__name__}"
            )
        self._in_flight[self._next_task_index] = _Task(self._next_task_index, ref, actor)
        self._next_task_index += 1

    def map(
        self,
        fn: Callable[[Any, Any], ObjectRef],
        values: Iterable[Any],
        *,
        progress: bool | str = False,
    ) -> Iterator[Any]:
        """Submit ``fn`` over every value; return an iterator of the results in the order of
        ``values``. Results not yet taken from earlier submissions are discarded first.
        progress (actorflow's, not Ray's): True, or a description, shows a tqdm bar in the
        driver that advances as results are taken."""
        _check_progress(progress)
        count = self._begin_map(fn, values)
        return self._shown(self._results(ordered=True), count, progress)

    def map_unordered(
        self,
        fn: Callable[[Any, Any], ObjectRef],
        values: Iterable[Any],
        *,
        progress: bool | str = False,
    ) -> Iterator[Any]:
        """Like ``map``, but results come as they finish."""
        _check_progress(progress)
        count = self._begin_map(fn, values)
        return self._shown(self._results(ordered=False), count, progress)

    @staticmethod
    def _shown(results: Iterator[Any], count: int, progress: bool | str) -> Iterator[Any]:
        if progress is False:
            return results
        from actorflow.util.progress import bar

        def advancing() -> Iterator[Any]:
            desc = progress if isinstance(progress, str) else "ActorPool.map"
            with bar(count, desc) as shown:
                for result in results:
                    shown.update(1)
                    yield result

        return advancing()

    def map_async(
        self, fn: Callable[[Any, Any], ObjectRef], values: Iterable[Any]
    ) -> AsyncIterator[Any]:
        """``map`` for async code: ``async for result in pool.map_async(fn, values)``."""
        self._begin_map(fn, values)
        return self._results_async(ordered=True)

    def map_unordered_async(
        self, fn: Callable[[Any, Any], ObjectRef], values: Iterable[Any]
    ) -> AsyncIterator[Any]:
        """``map_unordered`` for async code."""
        self._begin_map(fn, values)
        return self._results_async(ordered=False)

    def _begin_map(self, fn: Callable[[Any, Any], ObjectRef], values: Iterable[Any]) -> int:
        """Submit fn over values; how many."""
        self._discard_all()
        count = 0
        for value in values:
            self.submit(fn, value)
            count += 1
        return count

    def _discard_all(self) -> None:
        """Forget every result not yet taken, without waiting (as Ray's map does). Work already
        submitted still runs, queued submissions included; only its results are dropped. Each
        actor goes back to idle at once, so new calls queue behind any call still running."""
        while self._in_flight:
            task = self._take(next(iter(self._in_flight.values())))
            self._return_actor(task.actor, alive=not _died(task))

    def _results(self, ordered: bool) -> Iterator[Any]:
        while self.has_next():
            yield self.get_next() if ordered else self.get_next_unordered()

    async def _results_async(self, ordered: bool) -> AsyncIterator[Any]:
        while self.has_next():
            task = await self._wait_async(ordered, None, False)
            if task is None:  # another consumer took the last results while we waited
                return
            yield self._collect(task, task.future().result)

    # -- taking results -------------------------------------------------------------------------

    def has_next(self) -> bool:
        """Whether any submitted result has not been taken yet."""
        return bool(self._in_flight)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order, waiting up to ``timeout`` seconds (None: no
        limit). On timeout raise ``GetTimeoutError``; with ``ignore_if_timedout=True`` the
        timed-out result is also skipped (never returned) and its actor made idle again."""
        check_not_in_event_loop("ActorPool.get_next", "`await pool.get_next_async(...)`")
        _check_timeout(timeout)
        task = self._first()
        ready, _ = actorflow.wait([task.marker], num_returns=1, timeout=timeout)
        if not ready:
            self._timed_out(task, ignore_if_timedout)
        return self._collect(self._take(task), lambda: actorflow.get(task.ref))

    def get_next_unordered(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """Whichever result is ready first (the earliest submitted among those ready), waiting up
        to ``timeout`` seconds. On timeout raise ``GetTimeoutError``; with
        ``ignore_if_timedout=True`` the oldest outstanding result is skipped."""
        check_not_in_event_loop(
            "ActorPool.get_next_unordered", "`await pool.get_next_unordered_async(...)`"
        )
        _check_timeout(timeout)
        tasks = self._candidates(ordered=False)
        ready, _ = actorflow.wait([t.marker for t in tasks], num_returns=1, timeout=timeout)
        if not ready:
            self._timed_out(tasks[0], ignore_if_timedout)
        task = next(t for t in tasks if t.marker == ready[0])
        return self._collect(self._take(task), lambda: actorflow.get(task.ref))

    async def get_next_async(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """``get_next`` for async code. Raises StopAsyncIteration when nothing is pending.
        Several coroutines may wait on one pool: each result goes to exactly one of them."""
        return await self._get_async(True, timeout, ignore_if_timedout)

    async def get_next_unordered_async(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """``get_next_unordered`` for async code."""
        return await self._get_async(False, timeout, ignore_if_timedout)

    async def _get_async(self, ordered: bool, timeout: float | None, ignore: bool) -> Any:
        _check_timeout(timeout)
        if not self.has_next():
            raise StopAsyncIteration("No more results to get")
        task = await self._wait_async(ordered, timeout, ignore)
        if task is None:
            raise StopAsyncIteration("No more results to get")
        return self._collect(task, task.future().result)

    async def _wait_async(self, ordered: bool, timeout: float | None, ignore: bool) -> _Task | None:
        """Wait for the next result (ordered) or any result, and take it; None if nothing is
        left. Loops when another coroutine takes what this one waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._in_flight:
            # No await between here and _take: what is chosen is still in flight when taken.
            tasks = self._candidates(ordered)
            ready = [t for t in tasks if t.future().done()]
            if ready:
                return self._take(ready[0])
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0:
                self._timed_out(tasks[0], ignore)
            waiters = [asyncio.wrap_future(t.future()) for t in tasks]
            for waiter in waiters:
                waiter.add_done_callback(_consume)
            # asyncio.wait never cancels what it waits on, nor does cancelling this coroutine:
            # the remote calls and the pool are left as they were.
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        return None

    # -- shared bookkeeping ---------------------------------------------------------------------

    def _first(self) -> _Task:
        if not self._in_flight:
            raise StopIteration("No more results to get")
        return next(iter(self._in_flight.values()))

    def _candidates(self, ordered: bool) -> list[_Task]:
        """What the next take may return: the oldest task (ordered) or any, oldest first."""
        if ordered:
            return [self._first()]
        if not self._in_flight:
            raise StopIteration("No more results to get")
        return list(self._in_flight.values())

    def _take(self, task: _Task) -> _Task:
        del self._in_flight[task.index]
        return task

    def _timed_out(self, task: _Task, ignore: bool) -> None:
        if not ignore:
            raise exceptions.GetTimeoutError(_TIMEOUT_MSG)
        self._take(task)
        self._return_actor(task.actor)
        raise exceptions.GetTimeoutError(f"{_TIMEOUT_MSG}. The task {task.ref} has been ignored.")

    def _collect(self, task: _Task, value: Callable[[], Any]) -> Any:
        """The value of a taken task (value() reads it); its actor goes back to the pool unless
        the actor died, and the next queued submission starts."""
        with self._returning(task):
            return value()

    @contextlib.contextmanager
    def _returning(self, task: _Task) -> Iterator[None]:
        alive = True
        try:
            yield
        except exceptions.ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(task.actor, alive=alive)

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle_actors.append(actor)
        while self._pending_submits and self._idle_actors:
            self._start(*self._pending_submits.popleft())

    # -- membership -----------------------------------------------------------------------------

    def has_free(self) -> bool:
        """Whether an actor is idle and no submission is waiting for one."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Any | None:
        """Remove an idle actor from the pool and return it; None if none is free."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (idle: it takes a queued submission at once, if any)."""
        busy = [t.actor for t in self._in_flight.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)

    def __repr__(self) -> str:
        return (
            f"ActorPool(idle={len(self._idle_actors)}, in_flight={len(self._in_flight)}, "
            f"queued={len(self._pending_submits)})"
        )


def _died(task: _Task) -> bool:
    """Whether a task already known to be finished failed because its actor died."""
    future = task._future
    if future is None or not future.done() or future.cancelled():
        return False
    return isinstance(future.exception(), exceptions.ActorDiedError)
