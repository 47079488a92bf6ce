"""What a broadcast gives back: the results of every member, awaited, got, iterated or reduced.

A broadcast is one relay call per node; each answers with its node's outcomes together, so
results arrive (and iteration yields them) a node at a time. A member that failed has an
exception in its place: ``MeshMemberDiedError`` (an ``ActorDiedError`` naming the rank) when
it died, the method's own ``TaskError`` when it raised.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

import actorflow
from actorflow import exceptions
from actorflow.mesh._shape import coords_of


class MeshMemberDiedError(exceptions.ActorDiedError):
    """A mesh member died (or its node's relay did) before it answered a broadcast."""

    def __init__(
        self,
        message: str = "a mesh member died",
        cause: BaseException | None = None,
        rank: int = -1,
        coords: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message, cause)
        self.rank = rank  # the member's rank in the whole mesh
        self.coords = dict(coords or {})

    def __reduce__(self) -> Any:
        return (MeshMemberDiedError, (str(self), self.cause, self.rank, self.coords))


class _Call:
    """What one broadcast or reduction sent: a relay call per node, and where its ranks go."""

    def __init__(
        self,
        label: str,
        dims: tuple[tuple[str, int], ...],
        ranks: tuple[int, ...],
        parts: list[tuple[Any, tuple[int, ...], bool]],
    ) -> None:
        self.label = label  # "Worker.step" for messages
        self.dims = dims  # the whole mesh's, to name a member's coordinates
        self.ranks = ranks  # global ranks, in the order of the (sub)mesh called
        self.position = {rank: i for i, rank in enumerate(ranks)}
        # (ObjectRef, the global ranks it covers, direct): a relay's call, or (direct) the one
        # member of its node called straight (still one message for that node)
        self.parts = parts

    def died(self, rank: int, cause: BaseException) -> MeshMemberDiedError:
        coords = coords_of(self.dims, rank)
        where = ", ".join(f"{k}={v}" for k, v in coords.items())
        return MeshMemberDiedError(
            f"mesh member rank {rank} ({where}) died before {self.label} returned: {cause}",
            cause,
            rank,
            coords,
        )

    async def answer(self, index: int) -> tuple[Any, BaseException | None]:
        """(the part's answer, None) or (None, why it failed)."""
        ref, _, direct = self.parts[index]
        try:
            return await ref, None
        except exceptions.ActorDiedError as exc:
            return None, exc
        except Exception as exc:  # a member called straight raised
            if not direct:
                raise
            return None, exc

    def get_answer(self, index: int, timeout: float | None) -> tuple[Any, BaseException | None]:
        ref, _, direct = self.parts[index]
        try:
            return actorflow.get(ref, timeout=timeout), None
        except exceptions.GetTimeoutError:
            raise
        except exceptions.ActorDiedError as exc:
            return None, exc
        except Exception as exc:
            if not direct:
                raise
            return None, exc

    def member_error(self, rank: int, error: BaseException) -> BaseException:
        if isinstance(error, exceptions.ActorDiedError) and not isinstance(
            error, MeshMemberDiedError
        ):
            return self.died(rank, error)
        if isinstance(error, exceptions.TaskError):  # as get() raises it: also a ValueError...
            return error.as_instanceof_cause()
        return error


def _first_error(values: list[Any]) -> BaseException | None:
    for value in values:
        if isinstance(value, BaseException):
            return value
    return None


class MeshResult:
    """The results of ``mesh.method.broadcast(...)``, one per member in mesh order.

    - ``await result`` / ``result.get()`` / ``actorflow.get(result)``: the list of values; the
      first failure (in mesh order) is raised once every member has answered;
      ``return_exceptions=True`` (``await result.gather(return_exceptions=True)``) puts the
      exceptions in the list instead.
    - ``async for rank, value in result`` / ``for rank, value in result``: ``(rank, value)`` as
      they arrive (a node's members together), ``rank`` being the position in the mesh called;
      a failed member yields its exception as the value (every rank is yielded once).
    - ``reduce(fn)`` / ``sum()``: combine the values at the caller. To reduce near the data
      (on each node's relay, so that only one value per node travels), call
      ``mesh.method.reduce(fn, *args)`` instead of broadcasting.
    """

    def __init__(self, call: _Call) -> None:
        self._call = call

    def __len__(self) -> int:
        return len(self._call.ranks)

    def __repr__(self) -> str:
        return f"MeshResult({self._call.label}, {len(self)} members)"

    # -- turning a relay's answer into (position, value) ----------------------------------------

    def _part(self, index: int, answer: Any, failed: BaseException | None) -> list[tuple[int, Any]]:
        call = self._call
        _, ranks, direct = call.parts[index]
        if direct:
            value = answer if failed is None else call.member_error(ranks[0], failed)
            return [(call.position[ranks[0]], value)]
        if failed is not None:  # the relay itself is gone (its node died, or it was killed)
            return [(call.position[r], call.died(r, failed)) for r in ranks]
        values, errors = answer
        for i, error in errors:
            values[i] = call.member_error(ranks[i], error)
        return [(call.position[r], v) for r, v in zip(ranks, values, strict=True)]

    def _ordered(self, pairs: list[tuple[int, Any]], return_exceptions: bool) -> list[Any]:
        values: list[Any] = [None] * len(self._call.ranks)
        for position, value in pairs:
            values[position] = value
        if not return_exceptions:
            error = _first_error(values)
            if error is not None:
                raise error
        return values

    # -- async ----------------------------------------------------------------------------------

    async def _answer(self, index: int) -> list[tuple[int, Any]]:
        return self._part(index, *await self._call.answer(index))

    async def gather(self, return_exceptions: bool = False) -> list[Any]:
        """Every member's value, in mesh order (see the class docstring for failures)."""
        parts = await asyncio.gather(*(self._answer(i) for i in range(len(self._call.parts))))
        return self._ordered([p for part in parts for p in part], return_exceptions)

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.gather().__await__()

    async def __aiter__(self) -> AsyncIterator[tuple[int, Any]]:
        pending = [asyncio.ensure_future(self._answer(i)) for i in range(len(self._call.parts))]
        try:
            for next_done in asyncio.as_completed(pending):
                for position, value in sorted(await next_done, key=lambda p: p[0]):
                    yield position, value
        finally:
            for task in pending:
                task.cancel()

    async def reduce_async(self, fn: Callable[[Any, Any], Any]) -> Any:
        return functools.reduce(fn, await self.gather())

    # -- sync -----------------------------------------------------------------------------------

    def _get_part(self, index: int, timeout: float | None) -> list[tuple[int, Any]]:
        return self._part(index, *self._call.get_answer(index, timeout))

    def get(self, timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        """Every member's value in mesh order, waiting up to timeout seconds
        (GetTimeoutError after that)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pairs: list[tuple[int, Any]] = []
        for index in range(len(self._call.parts)):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            pairs.extend(self._get_part(index, left))
        return self._ordered(pairs, return_exceptions)

    def __actorflow_get__(self, timeout: float | None) -> list[Any]:
        return self.get(timeout)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        refs = [ref for ref, _, _ in self._call.parts]
        waiting = list(refs)
        while waiting:
            ready, waiting = actorflow.wait(waiting, num_returns=1)
            for ref in ready:
                yield from sorted(self._get_part(refs.index(ref), None), key=lambda p: p[0])

    def reduce(self, fn: Callable[[Any, Any], Any]) -> Any:
        """fn folded over the values in mesh order, at the caller (sync; in async code use
        ``await result.reduce_async(fn)``)."""
        return functools.reduce(fn, self.get())

    def sum(self) -> Any:
        return self.reduce(operator.add)


class MeshReduction:
    """The result of ``mesh.method.reduce(fn, *args)``: one value, reduced in a tree (each
    node's relay folds its members' values, the caller folds the nodes' partials). ``await``
    it, ``.get()`` it or ``actorflow.get()`` it; the first failure (lowest rank) is raised."""

    def __init__(self, call: _Call, fn: Callable[[Any, Any], Any]) -> None:
        self._call = call
        self._fn = fn

    def __repr__(self) -> str:
        return f"MeshReduction({self._call.label}, {len(self._call.ranks)} members)"

    def _combine(self, answers: list[tuple[Any, BaseException | None]]) -> Any:
        call = self._call
        errors: list[tuple[int, BaseException]] = []
        partials = []
        for (_, ranks, direct), (answer, failed) in zip(call.parts, answers, strict=True):
            if failed is not None:
                rank = ranks[0]
                error = call.member_error(rank, failed) if direct else call.died(rank, failed)
                errors.append((call.position[rank], error))
            elif direct:
                partials.append(answer)
            else:
                ok, value = answer
                if ok:
                    partials.append(value)
                else:
                    rank, error = value
                    errors.append((call.position[rank], call.member_error(rank, error)))
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        return functools.reduce(self._fn, partials)

    async def _result(self) -> Any:
        count = len(self._call.parts)
        answers = await asyncio.gather(*(self._call.answer(i) for i in range(count)))
        return self._combine(list(answers))

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    def get(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        answers = []
        for index in range(len(self._call.parts)):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            answers.append(self._call.get_answer(index, left))
        return self._combine(answers)

    def __actorflow_get__(self, timeout: float | None) -> Any:
        return self.get(timeout)
