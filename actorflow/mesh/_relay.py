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

# What a relay answers for one member: (rank, ok, value or exception).
Outcome = tuple[int, bool, Any]


class MeshRelay:
    """Delivers calls to the members of one mesh that live on this node."""

    def __init__(self, mesh_id: str, members: dict[int, Any]) -> None:
        self._mesh_id = mesh_id
        self._members: dict[int, Any] = dict(members)
        self._moved: set[int] = set()
        self.runs = 0  # run() messages received (one per broadcast that covers this node)
        self.delivered = 0  # member calls made

    async def run(
        self, method: str, ranks: list[int] | None, payload: tuple, reducer: Any = None
    ) -> Any:
        """Call ``method(*args, **kwargs)`` on the given ranks (None: all of this node's),
        concurrently. Without a reducer: a list of outcomes in rank order. With one: (True,
        the reduction over the ranks in order) or (False, (rank, exception)) for the lowest
        rank that failed."""
        self.runs += 1
        args, kwargs = payload
        chosen = sorted(self._members) if ranks is None else ranks
        calls: list[Any] = []
        for rank in chosen:
            handle = self._members.get(rank)
            if handle is None:
                calls.append(_missing(self._mesh_id, rank, rank in self._moved))
                continue
            calls.append(getattr(handle, method).remote(*args, **kwargs))
            self.delivered += 1
        values = await asyncio.gather(*(_settle(c) for c in calls), return_exceptions=True)
        outcomes: list[Outcome] = [
            (rank, not isinstance(v, BaseException), v) for rank, v in zip(chosen, values)
        ]
        if reducer is None:
            return outcomes
        for rank, ok, value in outcomes:
            if not ok:
                return (False, (rank, value))
        return (True, functools.reduce(reducer, [v for _, _, v in outcomes]))

    async def set_member(self, rank: int, handle: Any) -> None:
        """A supervised member restarted (a new actor): deliver to the new one."""
        self._members[rank] = handle
        self._moved.discard(rank)

    async def drop_member(self, rank: int) -> None:
        """A supervised member restarted on another node: its relay there delivers now."""
        self._members.pop(rank, None)
        self._moved.add(rank)

    async def stats(self) -> dict[str, Any]:
        return {
            "mesh_id": self._mesh_id,
            "runs": self.runs,
            "delivered": self.delivered,
            "ranks": sorted(self._members),
        }


async def _settle(call: Any) -> Any:
    if isinstance(call, BaseException):
        raise call
    return await call


def _missing(mesh_id: str, rank: int, moved: bool) -> BaseException:
    why = (
        "it was restarted on another node: get the mesh again (e.g. supervisor.get_mesh())"
        if moved
        else "this node's relay does not deliver to it"
    )
    return exceptions.ActorDiedError(f"mesh {mesh_id} rank {rank} is not here: {why}")
