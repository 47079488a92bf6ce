"""A distributed tqdm, as Ray's ``ray.experimental.tqdm_ray``: tasks and actors on any node make
progress bars that their driver draws on its terminal.

    from actorflow.experimental.tqdm_ray import tqdm

    @actorflow.remote
    def work(name):
        for x in tqdm(range(100), desc=name):
            ...

A bar in a worker sends its state to the driver at most every ``flush_interval_s`` seconds and
when it closes, as a record of its own (not printed text), so that bars and the workers'
forwarded output do not garble each other. In the driver the bar is drawn at once.
"""

from __future__ import annotations

import builtins
import time
import uuid as uuid_module
from collections.abc import Iterable, Iterator
from typing import Any

from actorflow._private.protocol.core import WorkerProgress
from actorflow._private.worker import context, output, progress_bars
from actorflow._private.worker.task_context import current_task_name

__all__ = ["safe_print", "tqdm"]


def safe_print(*args: Any, **kwargs: Any) -> None:
    """print(), without tearing the progress bars drawn in this process."""
    bars = progress_bars.active_manager()
    if bars is None:
        builtins.print(*args, **kwargs)
        return
    import io
    import sys

    buffer = io.StringIO()
    builtins.print(*args, **{**kwargs, "file": buffer})
    bars.write(kwargs.get("file") or sys.stdout, buffer.getvalue())


class tqdm:
    """A progress bar its driver draws, wherever it is made (Ray's tqdm_ray.tqdm)."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        desc: str | None = None,
        total: int | None = None,
        unit: str | None = None,
        position: int | None = None,
        flush_interval_s: float = 1.0,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        if flush_interval_s < 0:
            raise ValueError(f"flush_interval_s must be >= 0, got {flush_interval_s}")
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._x = 0
        self._closed = False
        self._uuid = uuid_module.uuid4().hex
        self._flush_interval_s = flush_interval_s
        self._last_flush = 0.0
        self._position = position  # kept for Ray's signature; the driver places the bars
        self._send(force=True)

    def set_description(self, desc: str) -> None:
        self._desc = desc
        self._send(force=True)

    def update(self, n: int = 1) -> None:
        self._x += n
        self._send()

    def refresh(self) -> None:
        self._send(force=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._send(force=True)

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            self.close()
            raise TypeError("this tqdm has no iterable: use update() to advance it")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _state(self) -> dict[str, Any]:
        return {
            "uuid": self._uuid,
            "desc": self._desc,
            "total": self._total,
            "x": self._x,
            "unit": self._unit,
            "closed": self._closed,
        }

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self._flush_interval_s:
            return
        self._last_flush = now
        core = context.core_or_none()
        if core is None or core.mode == "driver" or not core.log_address:
            if core is None or core.mode == "driver":
                progress_bars.manager().update("", self._state())
            return  # a worker whose output does not go to a driver: nowhere to draw
        message = WorkerProgress(output.origin_label(current_task_name.get()), self._state())
        core.runtime.call_soon(core.runtime.tell, core.log_address, message)
