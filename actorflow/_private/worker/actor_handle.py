"""Actor handles and their methods: what ``Cls.remote(...)`` returns and what travels.

A handle is cheap and travels: pass it to tasks and other actors, return it from methods. Method
calls go straight from the caller to the actor's worker, in the order each caller made them.
Public as ``actorflow.actor.ActorHandle`` (pickles name that path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import cloudpickle

from actorflow._private import serialization
from actorflow._private.worker import context
from actorflow._private.worker import options as opts
from actorflow._private.worker.calls import STREAMING

if TYPE_CHECKING:
    from actorflow._private.worker.object_ref import ObjectRef

PUBLIC_MODULE = "actorflow.actor"
# Methods every actor has: they end it gracefully once the calls before them are done.
TERMINATE_METHODS = ("__actorflow_terminate__", "__ray_terminate__")
# Ray's method every actor has that returns True once the actor is constructed.
READY_METHOD = "__ray_ready__"
# Ray's method every actor has that runs fn(the actor's instance, *args, **kwargs) in the actor.
CALL_METHOD = "__ray_call__"
BUILT_IN_METHODS = (*TERMINATE_METHODS, READY_METHOD, CALL_METHOD)

# What ``method.bind(...)`` builds: set by the public layer (actorflow.actor), which has the DAG.
_method_binder: list[Any] = []


def set_method_binder(binder: Any) -> None:
    _method_binder[:] = [binder]


T = TypeVar("T")  # the actor's class
P = ParamSpec("P")  # a method's parameters
R = TypeVar("R")  # what it returns


class ActorHandle(Generic[T]):
    """A reference to an actor; attribute access gives its methods. ``ActorHandle[Counter]``
    for type checkers: with actorflow's mypy plugin (``actorflow.mypy_plugin``),
    ``handle.increment`` is then an ``ActorMethod`` with ``Counter.increment``'s parameters and
    result; without it, an ``ActorMethod`` of any arguments and an ``Any`` result."""

    def __init__(
        self, actor_id: str, meta: dict[str, Any], max_task_retries: int = 0, owner: str = ""
    ) -> None:
        self._actor_id = actor_id
        self._meta = meta
        self._max_task_retries = max_task_retries
        # The process whose handles keep the actor alive ("" for named and detached actors,
        # which live until killed).
        self._owner = owner
        self._table: dict[str, tuple[Any, dict[str, Any]]] | None = None
        core = context.core_or_none()
        self._counted = core is not None
        if core is not None:
            core.handles.added(actor_id, owner)

    def __del__(self) -> None:
        if getattr(self, "_counted", False):
            core = context.core_or_none()
            if core is not None:
                core.handles.removed(self._actor_id)

    def _methods(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        if self._table is None:
            self._table = cloudpickle.loads(self._meta["methods_blob"])
        return self._table

    def __getattr__(self, name: str) -> ActorMethod[..., Any]:
        if (
            name.startswith("_")
            and name not in BUILT_IN_METHODS
            and name not in (self._meta.get("methods") or {})
        ):
            raise AttributeError(name)
        if name in BUILT_IN_METHODS:
            return ActorMethod(self, name, None, {"num_returns": 1})
        found = self._methods().get(name)
        if found is None:
            raise AttributeError(f"actor {self._meta['class_name']} has no method {name!r}")
        return ActorMethod(self, name, found[0], found[1])

    def __reduce__(self) -> Any:
        serialization.note_ref_pickled(self)
        return (ActorHandle, (self._actor_id, self._meta, self._max_task_retries, self._owner))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __repr__(self) -> str:
        return f"Actor({self._meta['class_name']}, {self._actor_id})"

    @property
    def actor_id(self) -> str:
        return self._actor_id


class ActorMethod(Generic[P, R]):
    """A method of an actor: ``.remote(*args)`` calls it and gives an ``ObjectRef[R]``."""

    def __init__(
        self, handle: ActorHandle, name: str, signature: Any, options: dict[str, Any]
    ) -> None:
        self._handle = handle
        self._name = name
        self._signature = signature
        self._options = options
        self._given: dict[str, Any] = {}

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        raise TypeError(f"actor methods cannot be called directly: use {self._name}.remote(...)")

    def options(self, **options: Any) -> ActorMethod[P, R]:
        checked = opts.check(options, opts.METHOD_OPTIONS, f"actor method {self._name}")
        merged = dict(self._options)
        merged.update(checked)
        method: ActorMethod[P, R] = ActorMethod(self._handle, self._name, self._signature, merged)
        method._given = {**self._given, **checked}
        return method

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A DAG node for this call (``actorflow.dag``), made when the graph is executed."""
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(
                    f"{self._handle._meta['class_name']}.{self._name}(): {exc}"
                ) from None
        if not _method_binder:
            raise RuntimeError("the DAG API is not loaded: import actorflow first")
        return _method_binder[0](self, args, kwargs)

    def _bound_options_for_dag(self) -> dict[str, Any]:
        """The options given with .options(...) (not the method's defaults)."""
        return self._given

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> ObjectRef[R]:
        class_name = self._handle._meta["class_name"]
        fn_name = f"{class_name}.{self._name}"
        signature = self._signature
        if signature is not None and (kwargs or len(args) != opts.plain_arity(signature)):
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{fn_name}(): {exc}") from None
        core = context.ensure_core()
        num_returns = self._options.get("num_returns", 1)
        if num_returns == "streaming":
            num_returns = STREAMING
        retries = self._options.get("max_task_retries", self._handle._max_task_retries)
        return core.submit_actor_call(
            self._handle,
            self._name,
            fn_name,
            args,
            kwargs,
            num_returns=num_returns,
            max_retries=retries,
            retry_exceptions=self._options.get("retry_exceptions", False),
            task_events=self._options.get(
                "enable_task_events", self._handle._meta.get("task_events", True)
            ),
        )

    def __repr__(self) -> str:
        return f"ActorMethod({self._handle._meta['class_name']}.{self._name})"


ActorHandle.__module__ = ActorMethod.__module__ = PUBLIC_MODULE
