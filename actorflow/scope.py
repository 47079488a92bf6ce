"""Structured concurrency for remote work: ``actorflow.scope()``.

    async with actorflow.scope() as s:
        profile = s.remote(load_profile, user)           # a task
        history = s.call(db.history.remote, user)        # or s.call(db.history, user)
        page = render(await profile, await history)

Every task or actor call started through the scope (``s.remote``/``s.call``, or a ref adopted
with ``s.track``) belongs to it. When the block ends normally, the scope waits for all of them;
if one of them fails meanwhile, the others are cancelled and that error is raised. When the block
ends by an error or by cancellation (an aiohttp handler whose client went away), every one not
finished is cancelled remotely (``actorflow.cancel``) and the scope waits, up to
``cancel_timeout`` seconds, until their cancellation is confirmed, so no stray remote work
outlives the request. A ``with`` block works the same way in sync code.

Why explicit (``s.remote``) and not every ``.remote()`` made inside the block: as with
``asyncio.TaskGroup``, what a scope owns is visible where it is started. A scope that captured
every ref created in its context would also capture calls made by library code, by helper
functions, and by asyncio tasks spawned inside it that are meant to outlive it (a fire-and-forget
audit log call), and cancel them by surprise.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from actorflow import api
from actorflow.object_ref import ObjectRef, ObjectRefGenerator

__all__ = ["Scope", "scope"]


class Scope:
    """Remote work that ends with a block: see the module's doc. Made by ``actorflow.scope()``."""

    def __init__(self, cancel_timeout: float = 10.0, force: bool = False) -> None:
        if not isinstance(cancel_timeout, (int, float)) or cancel_timeout < 0:
            raise ValueError(f"cancel_timeout must be a number >= 0, got {cancel_timeout!r}")
        self._cancel_timeout = float(cancel_timeout)
        self._force = force
        self._refs: list[ObjectRef] = []
        self._open = False
        self._closed = False

    # -- starting work --------------------------------------------------------------------------

    def remote(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn.remote(*args, **kwargs)`` (a remote function or an actor method), owned by the
        scope; its ref (or refs, with num_returns > 1)."""
        remote = getattr(fn, "remote", None)
        if remote is None:
            raise TypeError(
                f"scope.remote() takes a remote function or an actor method (something with "
                f".remote), not {type(fn).__name__}"
            )
        self._check_open()
        return self.track(remote(*args, **kwargs))

    def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """An actor call owned by the scope: ``s.call(handle.method, *args)`` (or the method's
        ``.remote`` itself)."""
        target = getattr(method, "__self__", None) if callable(method) else None
        if getattr(method, "__name__", "") == "remote" and target is not None:
            method = target  # s.call(handle.method.remote, ...)
        return self.remote(method, *args, **kwargs)

    def track(self, refs: Any) -> Any:
        """Make a ref made elsewhere (or a list of them) the scope's; returns it."""
        self._check_open()
        items = refs if isinstance(refs, (list, tuple)) else [refs]
        for ref in items:
            if isinstance(ref, ObjectRefGenerator):
                raise TypeError(
                    "a scope does not track streaming generators yet: track the refs it yields, "
                    "or cancel it with actorflow.cancel(generator)"
                )
            if not isinstance(ref, ObjectRef):
                raise TypeError(f"scope.track() takes ObjectRefs, not {type(ref).__name__}")
        self._refs.extend(items)
        return refs

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this scope has ended: start work in an open scope")
        if not self._open:
            raise RuntimeError("use the scope in `async with actorflow.scope() as s:` (or `with`)")

    def cancel(self) -> None:
        """Cancel every ref of the scope not finished yet (remotely)."""
        for ref in self._refs:
            if not ref.done():
                api.cancel(ref, force=self._force)

    # -- async with -----------------------------------------------------------------------------

    async def __aenter__(self) -> Scope:
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self._wait_all()
            else:
                self.cancel()
                await self._settle()
        finally:
            self._closed = True

    async def _wait_all(self) -> None:
        if not self._refs:
            return
        waits = {asyncio.ensure_future(_value(ref)): ref for ref in self._refs}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if t.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        except BaseException:
            self.cancel()
            await self._settle()
            raise
        finally:
            for task in waits:
                task.cancel()

    async def _settle(self) -> None:
        """Wait (bounded) until every cancelled ref has its outcome."""
        pending = [ref for ref in self._refs if not ref.done()]
        if not pending:
            return
        waits = [asyncio.ensure_future(_outcome(ref)) for ref in pending]
        try:
            await asyncio.wait(waits, timeout=self._cancel_timeout)
        finally:
            for task in waits:
                task.cancel()

    # -- with -----------------------------------------------------------------------------------

    def __enter__(self) -> Scope:
        self._open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                try:
                    api.get(list(self._refs))
                except BaseException:
                    self.cancel()
                    self._settle_sync()
                    raise
            else:
                self.cancel()
                self._settle_sync()
        finally:
            self._closed = True

    def _settle_sync(self) -> None:
        pending = [ref for ref in self._refs if not ref.done()]
        if pending:
            api.wait(pending, num_returns=len(pending), timeout=self._cancel_timeout)


async def _value(ref: ObjectRef) -> Any:
    return await ref


async def _outcome(ref: ObjectRef) -> None:
    try:
        await ref
    except BaseException:
        pass


def scope(cancel_timeout: float = 10.0, force: bool = False) -> Scope:
    """A scope for remote work (``async with`` or ``with``): what is started through it is
    waited for when the block ends, and cancelled remotely when it ends by an error or a
    cancellation (waiting up to cancel_timeout seconds for that to be confirmed; force=True ends
    the workers of tasks that do not stop)."""
    return Scope(cancel_timeout, force)
