"""Actors: ``@actorflow.remote`` on a class, ``Cls.remote(...)``, handles and their methods.

A handle is cheap and travels: pass it to tasks and other actors, return it from methods. Method
calls go straight from the caller to the actor's worker, in the order each caller made them.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Generic, TypeVar

import cloudpickle

from actorflow._private import errors, ids
from actorflow._private.scheduling_strategies import strategy_to_wire
from actorflow._private.worker import context
from actorflow._private.worker import options as opts
from actorflow._private.worker.actor_handle import ActorHandle, ActorMethod, set_method_binder
from actorflow._private.worker.actor_host import is_async_class
from actorflow._private.worker.executor import ActorExitSignal
from actorflow.dag.class_node import ClassNode, bind_actor_method

__all__ = [
    "ActorClass",
    "ActorClassInheritanceException",
    "ActorHandle",
    "ActorMethod",
    "exit_actor",
]

ActorClassInheritanceException = errors.ActorClassInheritanceError
set_method_binder(bind_actor_method)  # handle.method.bind(...) makes a DAG ClassMethodNode

# What ``Cls.mesh(...)`` / ``Cls.mesh_async(...)`` call: set by actorflow.mesh (a layer above).
_mesh_factory: dict[str, Any] = {}


def set_mesh_factory(create: Any, create_async: Any) -> None:
    _mesh_factory.update(create=create, create_async=create_async)


T = TypeVar("T")


def _method_table(cls: type) -> dict[str, tuple[Any, dict[str, Any]]]:
    """name -> (signature without self/cls, or None; method options), for every public method."""
    table: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name in dir(cls):
        if name.startswith("__") and name.endswith("__"):
            continue
        raw = inspect.getattr_static(cls, name)
        fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        if not callable(fn) or isinstance(fn, type):
            continue
        try:
            sig: Any = inspect.signature(fn)
            if not isinstance(raw, staticmethod):
                params = list(sig.parameters.values())[1:]  # drop self / cls
                sig = sig.replace(parameters=params)
        except (TypeError, ValueError):
            sig = None
        options = dict(getattr(fn, "__actorflow_method_options__", {}))
        if "num_returns" not in options and (
            inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        ):
            options["num_returns"] = "streaming"
        table[name] = (sig, options)
    return table


def _constructor_signature(cls: type) -> Any:
    try:
        return inspect.signature(cls)
    except (TypeError, ValueError):
        return None


class ActorClass(Generic[T]):
    """What ``@actorflow.remote`` makes of a class; ``.remote(...)`` creates an actor and gives
    an ``ActorHandle[T]``."""

    def __init__(self, cls: type[T], options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = opts.check(options, opts.ACTOR_OPTIONS, f"actor class {cls.__name__}")
        self._export: tuple[bytes, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor class {self.__name__} cannot be instantiated directly: use "
            f"{self.__name__}.remote(...)"
        )

    def __getattr__(self, name: str) -> Any:
        """The class's own attributes, static and class methods (``Counter.LIMIT`` inside the
        actor, where the name means this object, as in Ray); its methods are called through a
        handle."""
        cls = self.__dict__.get("_cls")
        if cls is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        try:
            raw = inspect.getattr_static(cls, name)
        except AttributeError:
            raise AttributeError(f"actor class {cls.__name__} has no attribute {name!r}") from None
        if inspect.isfunction(raw):
            raise AttributeError(
                f"{cls.__name__}.{name} is an actor method: create an actor with "
                f"{cls.__name__}.remote(...) and call handle.{name}.remote(...)"
            )
        return getattr(cls, name)

    def __mro_entries__(self, bases: tuple) -> tuple:
        raise errors.ActorClassInheritanceError(
            f"a class cannot inherit from actor class {self.__name__!r}: Inheriting from actor "
            f"classes is not currently supported. Inherit from the plain class instead and put "
            f"@actorflow.remote on the derived class"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"cls": self._cls, "options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cls"], state["options"])  # type: ignore[misc]

    def options(self, **options: Any) -> ActorClass[T]:
        merged = dict(self._options)
        merged.update(options)
        copy = ActorClass(self._cls, merged)
        copy._export = self._export
        return copy

    def bind(self, *args: Any, **kwargs: Any) -> ClassNode:
        """A DAG node that creates this actor when the graph is executed (``actorflow.dag``)."""
        signature = _constructor_signature(self._cls)
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self.__name__}.__init__(): {exc}") from None
        return ClassNode(self, args, kwargs, {})

    def mesh(self, shape: int | dict[str, int], *args: Any, **kwargs: Any) -> Any:
        """Create ``shape`` actors of this class together (an int, or named dimensions such
        as ``{"host": 2, "gpu": 4}``), each with ``*args, **kwargs``; an ``ActorMesh`` once
        all have started (see actorflow.mesh)."""
        return self._mesh_call("create")(self, shape, args, kwargs)

    async def mesh_async(self, shape: int | dict[str, int], *args: Any, **kwargs: Any) -> Any:
        """mesh() for async code (including async actors)."""
        return await self._mesh_call("create_async")(self, shape, args, kwargs)

    def _mesh_call(self, which: str) -> Any:
        if which not in _mesh_factory:
            raise RuntimeError("actor meshes are not loaded: import actorflow first")
        return _mesh_factory[which]

    def _exported(self) -> tuple[bytes, dict[str, Any]]:
        """(pickled class, metadata every handle carries), computed once."""
        if self._export is None:
            with self._lock:
                if self._export is None:
                    table = _method_table(self._cls)
                    meta = {
                        "class_name": self._cls.__name__,
                        "is_async": is_async_class(self._cls),
                        "methods": {
                            name: {"concurrency_group": o.get("concurrency_group")}
                            for name, (_, o) in table.items()
                        },
                        "methods_blob": cloudpickle.dumps(table),
                    }
                    self._export = (cloudpickle.dumps(self._cls, protocol=5), meta)
        return self._export

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        signature = _constructor_signature(self._cls)
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self.__name__}.__init__(): {exc}") from None
        o = self._options
        if o.get("get_if_exists") and not o.get("name"):
            raise ValueError("get_if_exists=True needs a name=... for the actor")
        name = o.get("name")
        _check_name("name", name)
        _check_name("namespace", o.get("namespace"))
        core = context.ensure_core()
        env = core.runtime_envs.resolve(o.get("runtime_env"))  # a bad path fails here
        blob, meta = self._exported()
        concurrent = meta["is_async"] or (o.get("max_concurrency") or 1) > 1
        out_of_order = o.get("allow_out_of_order_execution")
        if concurrent and out_of_order is False:
            # An async or threaded actor runs calls side by side: it cannot keep their order.
            kind = "an async actor"
            if not meta["is_async"]:
                kind = "a threaded actor (max_concurrency > 1)"
            raise ValueError(
                f"{self.__name__}: allow_out_of_order_execution=False is not possible for "
                f"{kind}, which runs calls concurrently; leave it unset or True"
            )
        meta = {
            **meta,
            "out_of_order": concurrent if out_of_order is None else out_of_order,
            "task_events": o.get("enable_task_events", True),  # its methods' default
        }
        if o.get("_mesh_member"):  # a mesh member: its rank, read by get_runtime_context()
            meta["mesh"] = o["_mesh_member"]
        actor_id = ids.new_id(16).hex()
        args_wire, slots, nested = core.serialize_args(f"{self.__name__}.__init__", args, kwargs)
        groups = o.get("concurrency_groups") or {}
        for group, limit in groups.items():
            if not isinstance(limit, int) or limit < 1:
                raise ValueError(f"concurrency group {group!r} needs a limit >= 1, got {limit!r}")
        for method_name, info in meta["methods"].items():
            group = info["concurrency_group"]
            if group and group not in groups:
                raise ValueError(
                    f"method {method_name} uses concurrency group {group!r}, which "
                    f"is not declared in concurrency_groups={groups!r}"
                )
        resources = opts.resource_request(o, 0.0)
        spec = {
            "actor_id": actor_id,
            "class_name": self.__name__,
            "class_blob": blob,
            "args_wire": args_wire,
            "slots": slots,
            "meta": meta,
            "resources": resources,
            "max_restarts": o.get("max_restarts", 0) or 0,
            "max_concurrency": o.get("max_concurrency"),
            "concurrency_groups": groups,
            "lifetime": o.get("lifetime"),
            "name": name,
            "namespace": o.get("namespace") or core.namespace,
            "get_if_exists": bool(o.get("get_if_exists")),
            "owner": core.address,
            # Its fate is its creating actor's (not process's) when asked, in an actor.
            "owner_actor_id": core.extensions.get("actor_id") or "",
            "survives_owner_restart": bool(o.get("_survive_owner_restart")),
            "job_id": core.job_id,
            "node_id": core.node_id,
            "strategy": strategy_to_wire(
                o.get("scheduling_strategy"),
                resources,
                self._cls.__qualname__,
                context.current_placement_group(),
            ),
        }
        collectable = name is None and o.get("lifetime") != "detached"
        if collectable:
            core.handles.owned_and_collectable(actor_id)
        # The constructor's arguments are read again at every restart: keep the refs and
        # handles they hold (and large arguments in the object store) while the actor lives.
        keep = [*nested, *(slot[1] for slot in slots)]
        actor_id, meta = core.create_actor(spec, wait=name is not None, keep=keep, runtime_env=env)
        return ActorHandle(
            actor_id,
            meta,
            max_task_retries=o.get("max_task_retries", 0) or 0,
            owner=core.address if collectable else "",
        )

    def __repr__(self) -> str:
        return f"ActorClass({self.__name__})"


def _check_name(option: str, value: str | None) -> None:
    """As Ray: an empty name or namespace is a ValueError (the option table already made
    another type a TypeError), rather than quietly meaning "none" or "the job's"."""
    if value is not None and not value:
        raise ValueError(f"an actor's {option} cannot be an empty string")


def exit_actor() -> None:
    """End the current actor after this call: it is not restarted; later calls get
    ActorDiedError."""
    from actorflow._private.worker import context

    core = context.core_or_none()
    if core is None or "actor_id" not in core.extensions:
        raise TypeError("exit_actor() can only be called inside an actor method")
    raise ActorExitSignal("the actor exited: exit_actor() was called")
