"""What ``mesh.method.stream(...)`` gives back: each member's value as soon as it answers.

A broadcast's answer comes a node at a time (one message per node); a stream's relays send a
message each time some of their members have answered, so a slow member does not hold back
the others of its node. Iterate it once, with ``async for`` or ``for``.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

from actorflow import exceptions
from actorflow._private.worker import context
from actorflow.mesh._result import _Call

_END = object()


class MeshStream:
    """``(rank, value)`` for each member of the mesh called, in the order they answer (rank:
    the position in the mesh called); a failed member yields its exception as the value
    (``MeshMemberDiedError`` when it died), so every rank is yielded once."""

    def __init__(self, call: _Call) -> None:
        self._call = call
        self._used = False

    def __len__(self) -> int:
        return len(self._call.ranks)

    def __repr__(self) -> str:
        return f"MeshStream({self._call.label}, {len(self)} members)"

    async def __aiter__(self) -> AsyncIterator[tuple[int, Any]]:
        if self._used:
            raise RuntimeError(f"{self!r} was iterated already: a stream is read once")
        self._used = True
        arrived: asyncio.Queue = asyncio.Queue()
        feeds = [
            asyncio.ensure_future(self._feed(i, arrived)) for i in range(len(self._call.parts))
        ]
        try:
            for _ in range(len(self._call.ranks)):
                position, value = await arrived.get()
                if position is None:  # a feed broke: not a member's failure, ours
                    raise value
                yield position, value
        finally:
            for feed in feeds:
                feed.cancel()

    async def _feed(self, index: int, arrived: asyncio.Queue) -> None:
        call = self._call
        source, ranks, direct = call.parts[index]
        try:
            if direct:
                answer, failed = await call.answer(index)
                value = answer if failed is None else call.member_error(ranks[0], failed)
                arrived.put_nowait((call.position[ranks[0]], value))
                return
            seen: set[int] = set()
            try:
                async for ref in source:
                    for i, ok, value in await ref:
                        seen.add(i)
                        rank = ranks[i]
                        arrived.put_nowait(
                            (call.position[rank], value if ok else call.member_error(rank, value))
                        )
            except exceptions.ActorDiedError as exc:  # the relay is gone: so is its node
                for i, rank in enumerate(ranks):
                    if i not in seen:
                        arrived.put_nowait((call.position[rank], call.died(rank, exc)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            arrived.put_nowait((None, exc))

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        loop = context.ensure_core().runtime.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(
                f"{self!r}: a sync iteration cannot wait on actorflow's own event loop: use "
                f"`async for rank, value in ...`"
            )
        items: queue.Queue = queue.Queue()

        async def pump() -> None:
            try:
                async for item in self:
                    items.put(item)
            finally:
                items.put(_END)

        pumping = asyncio.run_coroutine_threadsafe(pump(), loop)
        while (item := items.get()) is not _END:
            yield item
        pumping.result()  # raises what broke the stream, if anything
