"""PoolActor: a pool of actors that is itself an actor, so any job can share it.

    pool = PoolActor.options(name="embed", lifetime="detached").remote(Embedder, size=4)
    vector = await pool.submit.remote("embed", text)      # from any driver, task or actor
    pool = actorflow.get_actor("embed")                   # ... found by name

The pool is an async actor: a ``submit`` waiting for room or for its result is a pending
coroutine there, so one pool serves many callers at once. It keeps one queue per caller (a caller
is the calling process: a driver, or the worker of a task or actor) and hands work to its members
round-robin over the callers that have some, so a caller with a thousand calls queued does not
starve one with a single call. The queue is bounded (``max_queued``): a full pool makes ``submit``
wait for room (callers let in round-robin too), or fail with ``PoolFullError`` when asked not to
wait (``block=False``) or after ``timeout`` seconds. A member that dies is replaced; the calls it
was running are retried on the others within ``max_task_retries``, then fail with
``ActorDiedError``. ``resize(n)`` grows or shrinks the pool (a member taken out finishes what it
runs first), ``stats()`` says what it holds.

Results pass through the pool's process on their way back (one hop more than calling a member
directly): keep them small, or return refs (``actorflow.put``) for large values.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import actorflow
from actorflow._private.worker.task_context import current_caller
from actorflow.actor import ActorClass
from actorflow.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    PoolFullError,
    TaskCancelledError,
)

__all__ = ["PoolActor", "PoolFullError"]

DEFAULT_MAX_QUEUED = 1000


class FairQueue:
    """Items per key, taken round-robin over the keys that have some (in the order they first
    had some)."""

    def __init__(self) -> None:
        self._by_key: dict[str, deque[Any]] = {}

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_key.values())

    def push(self, key: str, item: Any, front: bool = False) -> None:
        items = self._by_key.setdefault(key, deque())
        if front:
            items.appendleft(item)
        else:
            items.append(item)

    def pop(self) -> Any:
        """The next item of the key whose turn it is; that key goes to the back of the turn."""
        key = next(iter(self._by_key))
        items = self._by_key.pop(key)
        item = items.popleft()
        if items:
            self._by_key[key] = items
        return item

    def remove(self, key: str, item: Any) -> bool:
        items = self._by_key.get(key)
        if items is None or item not in items:
            return False
        items.remove(item)
        if not items:
            del self._by_key[key]
        return True

    def counts(self) -> dict[str, int]:
        return {key: len(items) for key, items in self._by_key.items()}


@dataclass(eq=False)
class _Work:
    method: str
    args: tuple
    kwargs: dict[str, Any]
    caller: str
    future: asyncio.Future
    attempts: int = 0
    ref: Any = None  # the member call running it


@dataclass(eq=False)
class _Member:
    index: int
    handle: Any
    running: int = 0
    done: int = 0
    draining: bool = False  # taken out by resize: ends once idle
    gone: bool = False
    watch: Any = None
    work: set[_Work] = field(default_factory=set)


class _PoolActor:
    """A pool of ``size`` actors of class ``worker`` (an ``@actorflow.remote`` class or a plain
    one), each made with ``actor_options`` (``num_cpus``, ``resources``, ...) and
    ``worker(*init_args, **init_kwargs)``. ``max_queued``: the most calls waiting for a member
    (None: no limit); ``max_task_retries``: how often a call whose member died is run again;
    ``max_calls_per_member``: calls a member runs at once (more than 1 for async or threaded
    members)."""

    def __init__(
        self,
        worker: Any,
        size: int = 1,
        *,
        actor_options: dict[str, Any] | None = None,
        init_args: tuple | list = (),
        init_kwargs: dict[str, Any] | None = None,
        max_queued: int | None = DEFAULT_MAX_QUEUED,
        max_task_retries: int = 0,
        max_calls_per_member: int = 1,
    ) -> None:
        _check_count("size", size, 1)
        if max_queued is not None:
            _check_count("max_queued", max_queued, 0)
        _check_count("max_task_retries", max_task_retries, 0)
        _check_count("max_calls_per_member", max_calls_per_member, 1)
        if isinstance(worker, ActorClass):
            self._cls: type = worker._cls
            actor_class = worker
        elif isinstance(worker, type):
            self._cls, actor_class = worker, actorflow.remote(worker)
        else:
            raise TypeError(f"PoolActor takes an actor class, not {type(worker).__name__}")
        self._actor_class = actor_class.options(**(actor_options or {}))
        self._init_args = tuple(init_args)
        self._init_kwargs = dict(init_kwargs or {})
        self._name = actorflow.get_runtime_context().get_actor_name() or (
            f"PoolActor({self._cls.__name__})"
        )
        self._max_queued = max_queued
        self._max_task_retries = max_task_retries
        self._per_member = max_calls_per_member
        self._queue = FairQueue()  # admitted calls waiting for a member
        self._room = FairQueue()  # futures of submits waiting for room in the queue
        self._granted = 0  # room promised to waiters that have not queued their call yet
        self._members: list[_Member] = []
        self._size = size
        self._next_index = 0
        self._restarts = self._retries = self._completed = self._failed = 0
        self._start_failure = ""
        for _ in range(size):
            self._add_member()

    # -- the public methods ---------------------------------------------------------------------

    async def submit(
        self,
        method: str,
        *args: Any,
        block: bool = True,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``method(*args, **kwargs)`` on a member; its result (or its error). A full queue
        makes it wait for room (up to ``timeout`` seconds), or with ``block=False`` raise
        ``PoolFullError`` at once. ``block`` and ``timeout`` are the pool's: a method's own
        arguments of those names can be passed with ``submit_call``."""
        return await self.submit_call(method, args, kwargs, block=block, timeout=timeout)

    async def submit_call(
        self,
        method: str,
        args: tuple | list = (),
        kwargs: dict[str, Any] | None = None,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """``submit`` with the method's arguments as a tuple and a dict."""
        self._check_method(method)
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")
        if self._start_failure and not self._live_members():
            raise ActorDiedError(self._start_failure)
        caller = current_caller.get() or "unknown"
        await self._wait_for_room(caller, block, timeout)
        work = _Work(method, tuple(args), dict(kwargs or {}), caller, self._loop().create_future())
        self._queue.push(caller, work)
        self._dispatch()
        try:
            return await work.future
        except asyncio.CancelledError:  # the caller cancelled its submit: so is the work
            work.future.cancel()
            if work.ref is not None:
                actorflow.cancel(work.ref)
            elif self._queue.remove(caller, work):
                self._let_in()
            raise

    async def resize(self, size: int) -> int:
        """Grow or shrink the pool to size members; a member taken out finishes the calls it
        runs, then ends. The new size."""
        _check_count("size", size, 1)
        self._size = size
        active = [m for m in self._members if not m.draining]
        for _ in range(size - len(active)):
            self._add_member()
        # Take out the least busy members first, the newest of them first.
        for member in sorted(active, key=lambda m: (m.running, -m.index))[: len(active) - size]:
            member.draining = True
            self._end_if_idle(member)
        self._dispatch()
        return size

    async def stats(self) -> dict[str, Any]:
        """What the pool holds now: its size, calls queued (in all and per caller), running and
        waiting for room, and per member its calls running and done; restarts, retries."""
        return {
            "name": self._name,
            "size": self._size,
            "queued": len(self._queue),
            "queued_per_caller": self._queue.counts(),
            "waiting_for_room": len(self._room),
            "max_queued": self._max_queued,
            "running": sum(m.running for m in self._members),
            "completed": self._completed,
            "failed": self._failed,
            "restarts": self._restarts,
            "retries": self._retries,
            "members": [
                {
                    "index": m.index,
                    "actor_id": m.handle.actor_id,
                    "running": m.running,
                    "done": m.done,
                    "state": "draining" if m.draining else "alive",
                }
                for m in self._members
            ],
        }

    async def members(self) -> list[Any]:
        """The handles of the members now in the pool (draining ones included)."""
        return [m.handle for m in self._members]

    # -- admission ------------------------------------------------------------------------------

    def _full(self) -> bool:
        limit = self._max_queued
        return limit is not None and len(self._queue) + self._granted >= limit

    async def _wait_for_room(self, caller: str, block: bool, timeout: float | None) -> None:
        if not len(self._room) and not self._full():
            return
        if not block:
            raise PoolFullError(
                f"pool {self._name!r} is full: {len(self._queue)} calls queued, its limit "
                f"(max_queued) is {self._max_queued}; submit(block=True) waits for room"
            )
        room = self._loop().create_future()
        self._room.push(caller, room)
        try:
            await asyncio.wait_for(asyncio.shield(room), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if room.done():  # let in just now: pass the room on
                self._granted -= 1
                self._let_in()
            else:
                self._room.remove(caller, room)
                room.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise PoolFullError(
                f"pool {self._name!r} is full: no room in its queue (max_queued="
                f"{self._max_queued}) within {timeout} s"
            ) from None
        self._granted -= 1

    def _let_in(self) -> None:
        """Give freed room to the submits waiting for it, round-robin over their callers."""
        while len(self._room) and not self._full():
            room = self._room.pop()
            if not room.done():
                self._granted += 1
                room.set_result(None)

    # -- running work ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while len(self._queue):
            free = [m for m in self._live_members() if m.running < self._per_member]
            if not free:
                break
            member = min(free, key=lambda m: m.running)
            work = self._queue.pop()
            if work.future.done():  # its submit gave up
                continue
            member.running += 1
            member.work.add(work)
            asyncio.ensure_future(self._run(member, work))
        self._let_in()
        if self._start_failure and not self._live_members():
            self._fail_queued(ActorDiedError(self._start_failure))

    async def _run(self, member: _Member, work: _Work) -> None:
        try:
            work.ref = getattr(member.handle, work.method).remote(*work.args, **work.kwargs)
            value = await work.ref
        except (ActorDiedError, ActorUnavailableError) as exc:
            self._lost(member, str(exc), dead=isinstance(exc, ActorDiedError))
            if work.future.done():
                pass
            elif work.attempts < self._max_task_retries:
                work.attempts += 1
                work.ref = None
                self._retries += 1
                self._queue.push(work.caller, work, front=True)
            else:
                self._settle(
                    work,
                    error=ActorDiedError(
                        f"pool {self._name!r}: member {member.index} died running "
                        f"{self._cls.__name__}.{work.method} (tried {work.attempts + 1} "
                        f"time(s), max_task_retries={self._max_task_retries}): {exc}"
                    ),
                )
        except TaskCancelledError as exc:
            self._settle(work, error=exc)
        except Exception as exc:
            self._settle(work, error=exc)
        else:
            member.done += 1
            self._settle(work, value=value)
        finally:
            member.running -= 1
            member.work.discard(work)
            self._end_if_idle(member)
            self._dispatch()

    def _settle(self, work: _Work, value: Any = None, error: BaseException | None = None) -> None:
        if work.future.done():
            return
        if error is None:
            self._completed += 1
            work.future.set_result(value)
        else:
            self._failed += 1
            work.future.set_exception(error)

    def _fail_queued(self, error: BaseException) -> None:
        while len(self._queue):
            self._settle(self._queue.pop(), error=error)

    # -- members --------------------------------------------------------------------------------

    def _live_members(self) -> list[_Member]:
        return [m for m in self._members if not m.draining and not m.gone]

    def _add_member(self) -> None:
        handle = self._actor_class.remote(*self._init_args, **self._init_kwargs)
        member = _Member(self._next_index, handle)
        self._next_index += 1
        self._members.append(member)

        def on_event(event: Any) -> None:
            if event.dead:
                if event.kind == "start_failed":
                    self._start_failure = (
                        f"pool {self._name!r}: member {member.index} could not start: {event.cause}"
                    )
                self._lost(member, event.cause, replace=event.kind != "start_failed")

        member.watch = actorflow.watch(handle, callback=on_event)

    def _lost(self, member: _Member, cause: str, replace: bool = True, dead: bool = True) -> None:
        """member died: take it out and, unless it was leaving anyway, start another."""
        if member.gone:
            return
        member.gone = True
        member.watch.stop()
        self._members.remove(member)
        if not dead:
            # Unavailable is not always dead (a node cut off for a while): make sure it is
            # gone, so that a member the pool gave up on never comes back to run work twice.
            actorflow.kill(member.handle)
        if member.draining:
            return
        if replace:
            self._restarts += 1
            self._add_member()
        self._dispatch()

    def _end_if_idle(self, member: _Member) -> None:
        if member.draining and member.running == 0 and not member.gone:
            member.gone = True
            member.watch.stop()
            self._members.remove(member)
            actorflow.kill(member.handle)

    def _check_method(self, method: Any) -> None:
        if not isinstance(method, str) or method.startswith("_"):
            raise TypeError(f"submit() takes a method name (a public method), got {method!r}")
        if not callable(getattr(self._cls, method, None)):
            raise AttributeError(
                f"pool {self._name!r}: {self._cls.__name__} has no method {method!r}"
            )

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()


def _check_count(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"PoolActor {name} must be an int >= {least}, got {value!r}")


PoolActor = actorflow.remote(_PoolActor)
