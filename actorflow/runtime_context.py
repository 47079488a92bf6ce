"""``actorflow.get_runtime_context()``: what is running here (Ray's ``ray.runtime_context``).

Ids are hex strings (the ``get_*`` methods, as in Ray). Ray's deprecated ``job_id``/``node_id``/
``task_id``/``actor_id``/``current_placement_group_id`` properties and ``get()`` give id objects;
here they give ``HexId``, a hex string that also answers ``.hex()``, so code of either kind works.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from actorflow._private.protocol import raylet
from actorflow._private.runtime_env.spec import RuntimeEnv
from actorflow._private.worker import context
from actorflow._private.worker.actor_handle import ActorHandle
from actorflow._private.worker.core_worker import CoreWorker
from actorflow._private.worker.task_context import current_task_id, current_task_name

__all__ = ["HexId", "RuntimeContext", "get_runtime_context"]


class HexId(str):
    """An id as its hex string that, like Ray's id objects, also answers ``.hex()``."""

    __slots__ = ()

    def hex(self) -> str:  # type: ignore[override]  # str has no hex(); Ray's ids do
        return str(self)


def _hex_id(value: str | None) -> HexId | None:
    return None if value is None else HexId(value)


def _deprecated(getter_name: str) -> property:
    """Ray's old id property: the id as a HexId, with Ray's warning naming the getter."""

    def read(self: RuntimeContext) -> HexId | None:
        warnings.warn(f"Use {getter_name}() instead", DeprecationWarning, stacklevel=2)
        return _hex_id(getattr(self, getter_name)())

    return property(read)


class RuntimeContext:
    """The ids of the job, node, worker, task and actor this code runs for, and its namespace."""

    def __init__(self, core: CoreWorker) -> None:
        self._core = core

    def get_job_id(self) -> str:
        return self._core.job_id

    def get_node_id(self) -> str:
        return self._core.node_id

    def get_worker_id(self) -> str:
        return self._core.worker_id

    def get_task_id(self) -> str | None:
        """The running task's or actor call's id (None in a driver's own code)."""
        task_id = current_task_id.get()
        return task_id.hex() if task_id is not None else None

    def get_task_name(self) -> str | None:
        return current_task_name.get() or None

    def get_task_function_name(self) -> str | None:
        return current_task_name.get() or None

    def get_actor_id(self) -> str | None:
        return self._core.extensions.get("actor_id")

    def get_actor_name(self) -> str | None:
        """The actor's name: "" in an unnamed actor, None outside an actor (as Ray)."""
        if self._core.extensions.get("actor_id") is None:
            return None
        return self._core.extensions.get("actor_name") or ""

    def get_namespace(self) -> str:
        return self._core.namespace

    @property
    def runtime_env(self) -> RuntimeEnv:
        """The runtime_env this code runs in: a task's or actor's own, or in a driver its job's
        (working_dir and py_modules as the URIs of their uploaded packages, as in Ray)."""
        return RuntimeEnv(_validate=False, **self._core.runtime_envs.current)

    def get_runtime_env_string(self) -> str:
        return self.runtime_env.serialize()

    def get_placement_group_id(self) -> str | None:
        """The placement group the running task or actor was placed in (None outside one)."""
        group = context.current_placement_group()
        return group[1] if group is not None else None

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the running task or actor holds ({} in a driver's own code)."""
        core = self._core
        if "assigned_resources" in core.extensions:  # an actor: what it was created with
            return dict(core.extensions["assigned_resources"])
        if core.mode != "worker" or current_task_id.get() is None:
            return {}
        return core.call_control(
            core.raylet_address,
            "raylet",
            "assigned_resources",
            raylet.AssignedResources(core.worker_id),
        )

    def is_canceled(self) -> bool:
        """Whether actorflow.cancel was called on the running task (for code that checks
        now and then and cleans up: a cancelled task is also interrupted, see cancel)."""
        task_id = current_task_id.get()
        is_cancelled = self._core.extensions.get("is_cancelled")
        if task_id is None or is_cancelled is None:
            raise RuntimeError("is_canceled() is only available inside a task or actor call")
        return bool(is_cancelled(task_id))

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerators this worker may use, as Ray: {"GPU": ["0", ...]}."""
        in_worker = self._core.mode == "worker"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "") if in_worker else ""
        return {"GPU": [i.strip() for i in visible.split(",") if i.strip()]}

    job_id = _deprecated("get_job_id")
    node_id = _deprecated("get_node_id")
    task_id = _deprecated("get_task_id")
    actor_id = _deprecated("get_actor_id")
    current_placement_group_id = _deprecated("get_placement_group_id")
    namespace = property(get_namespace)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor is a restart (it died and was started again)."""
        return bool(self._core.extensions.get("actor_restarts", 0))

    def _mesh(self) -> dict[str, Any] | None:
        meta = self._core.extensions.get("actor_meta") or {}
        return meta.get("mesh")

    @property
    def mesh_rank(self) -> int | None:
        """This actor's rank in its mesh (actorflow.mesh), 0..N-1 in row-major order; None
        outside a mesh member."""
        info = self._mesh()
        return None if info is None else int(info["rank"])

    @property
    def mesh_shape(self) -> dict[str, int] | None:
        """The shape of the mesh this actor is a member of ({name: size}); None outside one."""
        info = self._mesh()
        return None if info is None else {str(n): int(s) for n, s in info["shape"]}

    @property
    def mesh_coords(self) -> dict[str, int] | None:
        """This member's coordinates in its mesh ({name: index}); None outside a mesh."""
        info = self._mesh()
        if info is None:
            return None
        coords: dict[str, int] = {}
        rank = int(info["rank"])
        for name, size in reversed(info["shape"]):
            rank, coords[str(name)] = divmod(rank, int(size))
        return dict(reversed(list(coords.items())))

    @property
    def current_actor(self) -> ActorHandle:
        """A handle to the actor this code runs in."""
        actor_id = self._core.extensions.get("actor_id")
        if actor_id is None:
            raise RuntimeError("current_actor is only available inside an actor")
        return ActorHandle(actor_id, self._core.extensions["actor_meta"])

    def get(self) -> dict[str, Any]:
        """The ids as a dict, as Ray's: ``task_id`` only inside a task or call, ``actor_id``
        only inside an actor, ``placement_group_id`` only inside a placement group."""
        found: dict[str, Any] = {
            "job_id": HexId(self.get_job_id()),
            "node_id": HexId(self.get_node_id()),
            "worker_id": HexId(self.get_worker_id()),
            "task_id": _hex_id(self.get_task_id()),
            "actor_id": _hex_id(self.get_actor_id()),
            "placement_group_id": _hex_id(self.get_placement_group_id()),
            "namespace": self.namespace,
        }
        return {key: value for key, value in found.items() if value is not None}


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(context.ensure_core())
