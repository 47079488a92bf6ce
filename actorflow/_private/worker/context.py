"""The one per-process runtime handle (set by init() in a driver, by worker_main in a worker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actorflow._private import serialization
from actorflow._private.worker.task_context import current_placement_group_wire

if TYPE_CHECKING:
    from actorflow._private.worker.core_worker import CoreWorker

_core: CoreWorker | None = None
_session: Any = None  # what init() started (node.LocalSession) in a driver
# init() with its defaults, registered by actorflow.api: the first remote call, put or get of
# a program that never called init() starts a local cluster, as in Ray.
_auto_init: Callable[[], None] | None = None


def core_or_none() -> CoreWorker | None:
    return _core


def set_core(core: CoreWorker | None, session: Any = None) -> None:
    global _core, _session
    _core = core
    _session = session
    serialization.set_shared_reader(core.shared.load if core is not None else None)
    serialization.set_out_of_band_keeper(core.keep_forever if core is not None else None)


def session() -> Any:
    return _session


def set_auto_init(init: Callable[[], None]) -> None:
    global _auto_init
    _auto_init = init


def ensure_core() -> CoreWorker:
    """This process's core worker, initialising actorflow with its defaults if need be."""
    core = _core
    if core is None and _auto_init is not None:
        _auto_init()
        core = _core
    if core is None:
        raise RuntimeError("actorflow is not initialized: call actorflow.init() first")
    return core


def current_placement_group() -> list | None:
    """The wire form of the placement group the running task or actor was placed in (None
    in a driver or outside a group): a task's from its push, an actor's for its whole life."""
    wire = current_placement_group_wire.get()
    if wire is None and _core is not None:
        wire = _core.extensions.get("placement_group")
    return wire
