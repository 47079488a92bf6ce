"""The per-node relay of a mesh: one small async actor on each node that has members.

A broadcast sends one ``run`` to each relay; the relay calls its node's members (local calls,
no network hop) and answers with their outcomes, or with its node's partial reduction, so the
caller sends and receives one message per node, not one per member.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from actorflow import exceptions


class MeshRelay:
    """Delivers calls to the members of one mesh that live on this node."""

    def __init__(self, mesh_id: str, members: dict[int, Any]) -> None:
        self._mesh_id = mesh_id
        self._members: dict[int, Any] = dict(members)
        self._methods: dict[tuple[int, str], Any] = {}  # (rank, name) -> its ActorMethod
        self._moved: set[int] = set()
        self.runs = 0  # run() messages received (one per broadcast that covers this node)
        self.delivered = 0  # member calls made

    async def run(self, method: str, ranks: list[int], payload: tuple, reducer: Any = None) -> Any:
        """Call ``method(*args, **kwargs)`` on the given ranks, concurrently. Without a
        reducer: ``[values, errors]``, the values in the order of ranks (None where one
        failed) and ``[index, exception]`` per failure (plain values travel without
        pickling). With one: (True, the reduction over the ranks in order) or (False, (rank,
        exception)) for the first rank that failed."""
        self.runs += 1
        args, kwargs = payload
        waits: list[Any] = []
        for rank in ranks:
            bound = self._methods.get((rank, method))
            if bound is None:
                handle = self._members.get(rank)
                if handle is None:
                    waits.append(_failed(_missing(self._mesh_id, rank, rank in self._moved)))
                    continue
                bound = self._methods[(rank, method)] = getattr(handle, method)
            waits.append(bound.remote(*args, **kwargs).as_future())
            self.delivered += 1
        values = await asyncio.gather(*waits, return_exceptions=True)
        errors: list[tuple[int, BaseException]] = [
            (i, v) for i, v in enumerate(values) if isinstance(v, BaseException)
        ]
        if reducer is not None:
            if errors:
                index, error = errors[0]
                return (False, (ranks[index], error))
            return (True, functools.reduce(reducer, values))
        for index, _ in errors:
            values[index] = None
        return [values, [list(e) for e in errors]]

    async def run_stream(self, method: str, ranks: list[int], payload: tuple) -> Any:
        """run() for mesh.method.stream(): yields ``[[index, ok, value or exception], ...]``
        each time some members have answered (those that answered together, together)."""
        self.runs += 1
        args, kwargs = payload
        index: dict[asyncio.Future, int] = {}
        for i, rank in enumerate(ranks):
            handle = self._members.get(rank)
            if handle is None:
                future = _failed(_missing(self._mesh_id, rank, rank in self._moved))
            else:
                future = getattr(handle, method).remote(*args, **kwargs).as_future()
                self.delivered += 1
            index[future] = i
        pending = set(index)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            batch = []
            for future in done:
                error = future.exception()
                ok = error is None
                batch.append([index[future], ok, future.result() if ok else error])
            yield sorted(batch, key=lambda item: item[0])

    async def set_member(self, rank: int, handle: Any) -> None:
        """A supervised member restarted (a new actor): deliver to the new one."""
        self._members[rank] = handle
        self._moved.discard(rank)
        self._methods = {key: m for key, m in self._methods.items() if key[0] != rank}

    async def drop_member(self, rank: int) -> None:
        """A supervised member restarted on another node: its relay there delivers now."""
        self._members.pop(rank, None)
        self._moved.add(rank)
        self._methods = {key: m for key, m in self._methods.items() if key[0] != rank}

    async def stats(self) -> dict[str, Any]:
        return {
            "mesh_id": self._mesh_id,
            "runs": self.runs,
            "delivered": self.delivered,
            "ranks": sorted(self._members),
        }


def _failed(error: BaseException) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def _missing(mesh_id: str, rank: int, moved: bool) -> BaseException:
    why = (
        "it was restarted on another node: get the mesh again (e.g. supervisor.get_mesh())"
        if moved
        else "this node's relay does not deliver to it"
    )
    return exceptions.ActorDiedError(f"mesh {mesh_id} rank {rank} is not here: {why}")
