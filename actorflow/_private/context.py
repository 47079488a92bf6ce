"""The one per-process runtime handle (set by init() in a driver, by worker_main in a worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actorflow._private.worker.core_worker import CoreWorker

_core: CoreWorker | None = None
_session: Any = None  # what init() started (node.LocalSession) in a driver


def core_or_none() -> CoreWorker | None:
    return _core


def set_core(core: CoreWorker | None, session: Any = None) -> None:
    global _core, _session
    _core = core
    _session = session


def session() -> Any:
    return _session
