"""Progress bars in the driver for work in flight: ``progress(refs)`` waits for many refs with a
tqdm bar and returns their values (as ``actorflow.get``), ``as_completed(refs)`` yields the refs
as they finish with a bar, and ``ActorPool.map(..., progress=True)`` shows one for a map."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from actorflow import api
from actorflow._private.worker import progress_bars
from actorflow.object_ref import ObjectRef

__all__ = ["as_completed", "bar", "progress"]


def bar(total: int | None, desc: str | None = None, unit: str = "task") -> Any:
    """A tqdm bar on the driver's terminal (stderr), which forwarded worker output prints
    around rather than over."""
    return progress_bars.local_bar(total=total, desc=desc or "", unit=unit)


def _checked(refs: Iterable[Any]) -> list[ObjectRef]:
    refs = list(refs)
    for i, ref in enumerate(refs):
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"progress() takes ObjectRefs; item {i} is a {type(ref).__name__}")
    return refs


def as_completed(
    refs: Iterable[ObjectRef], *, desc: str | None = None, timeout: float | None = None
) -> Iterator[ObjectRef]:
    """Yield each ref once its value is ready, in the order they finish, advancing a bar.
    timeout: seconds for all of them (None: no limit); GetTimeoutError when it passes."""
    pending = _checked(refs)
    with bar(len(pending), desc) as shown:
        while pending:
            ready, pending = api.wait(pending, num_returns=1, timeout=timeout, fetch_local=False)
            if not ready:
                from actorflow.exceptions import GetTimeoutError

                raise GetTimeoutError(
                    f"{len(pending)} of the refs were not ready within {timeout} s"
                )
            # Whatever else is ready now comes too, without another wait per ref.
            more, pending = api.wait(pending, num_returns=len(pending), timeout=0)
            for ref in ready + more:
                shown.update(1)
                yield ref


def progress(
    refs: Iterable[ObjectRef], *, desc: str | None = None, timeout: float | None = None
) -> list[Any]:
    """The values of refs, in their order (as ``actorflow.get(refs)``), waiting with a bar that
    advances as each finishes. An error of one of them is raised (as get raises it)."""
    refs = _checked(refs)
    for _ in as_completed(refs, desc=desc, timeout=timeout):
        pass
    return list(api.get(refs))
