"""Remote functions: ``@actorflow.remote`` on a function, ``f.remote(...)``, ``f.options(...)``."""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import cloudpickle

from actorflow._private.scheduling_strategies import strategy_to_wire
from actorflow._private.worker import context
from actorflow._private.worker import options as opts
from actorflow._private.worker.calls import STREAMING
from actorflow._private.worker.dynamic_returns import dynamic_returns
from actorflow.dag.function_node import FunctionNode

if TYPE_CHECKING:
    from actorflow.object_ref import ObjectRef

P = ParamSpec("P")  # the function's parameters
R = TypeVar("R")  # its result (an async function's: what its coroutine returns)


class RemoteFunction(Generic[P, R]):
    """What ``@actorflow.remote`` makes of a function: ``.remote(*args)`` runs it as a task and
    gives an ``ObjectRef[R]`` (type checkers see the function's own parameters)."""

    def __init__(self, function: Callable[P, Any], options: dict[str, Any] | None = None) -> None:
        self._function = function
        self._options = opts.check(
            options or {}, opts.TASK_OPTIONS, f"remote function {function.__qualname__}"
        )
        self._name = function.__qualname__
        self._signature = inspect.signature(function)
        self._is_generator = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(
            function
        )
        self._export: tuple[bytes, bytes] | None = None
        self._env: tuple[Any, Any] | None = None  # (core, its ResolvedEnv for our runtime_env)
        # The resource request, made once and shared by every task submitted from here (a
        # million queued tasks then hold one dict, not a million).
        self._resources = opts.resource_request(self._options, 1.0)
        self._lock = threading.Lock()
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", self._name)
        self.__wrapped__ = function

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        raise TypeError(
            f"remote function {self._name} cannot be called directly: use "
            f"{self.__name__}.remote(...)"
        )

    def __getstate__(self) -> dict[str, Any]:
        # Travels to workers inside other tasks: the function, not our caches or lock.
        return {"function": self._function, "options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["function"], state["options"])  # type: ignore[misc]

    def options(self, **options: Any) -> RemoteFunction[P, R]:
        """A copy with these options changed; the exported function is shared."""
        merged = dict(self._options)
        merged.update(options)
        copy: RemoteFunction[P, R] = RemoteFunction(self._function, merged)
        copy._export = self._export
        return copy

    def bind(self, *args: Any, **kwargs: Any) -> FunctionNode:
        """A DAG node for this call (``actorflow.dag``), submitted when the graph is executed."""
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._name}(): {exc}") from None
        return FunctionNode(self, args, kwargs, {})

    def _exported(self) -> tuple[bytes, bytes]:
        """(function id, pickled function), computed once: workers cache by id."""
        if self._export is None:
            with self._lock:
                if self._export is None:
                    blob = cloudpickle.dumps(self._function, protocol=5)
                    self._export = (hashlib.sha1(blob).digest()[:16], blob)
        return self._export

    def _exported_dynamic(self) -> tuple[bytes, bytes]:
        """The export of the function wrapped for num_returns="dynamic" (rarely used: not
        cached)."""
        if not self._is_generator:
            raise TypeError(
                f"num_returns='dynamic' needs a generator function; {self._name} is not one"
            )
        blob = cloudpickle.dumps(dynamic_returns(self._function), protocol=5)
        return hashlib.sha1(blob).digest()[:16], blob

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> ObjectRef[R]:
        if kwargs or len(args) != opts.plain_arity(self._signature):
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self._name}(): {exc}") from None
        core = context.ensure_core()
        o = self._options
        num_returns = o.get("num_returns", "streaming" if self._is_generator else 1)
        if num_returns == "streaming":
            num_returns = STREAMING
        if num_returns == "dynamic":
            fn_id, blob = self._exported_dynamic()
            num_returns = 1
        else:
            fn_id, blob = self._exported()
        max_retries = o.get("max_retries")
        resources = self._resources
        env = self._env
        if env is None or env[0] is not core:  # packed (and uploaded) once per process
            env = self._env = (core, core.runtime_envs.resolve(o.get("runtime_env")))
        return core.submit_task(
            fn_id=fn_id,
            fn_blob=blob,
            fn_name=o.get("name") or self._name,  # as Ray: options(name=) names the task
            args=args,
            kwargs=kwargs,
            num_returns=num_returns,
            resources=resources,
            max_retries=core.config.default_max_retries if max_retries is None else max_retries,
            retry_exceptions=o.get("retry_exceptions", False),
            strategy=strategy_to_wire(
                o.get("scheduling_strategy"),
                resources,
                self._name,
                context.current_placement_group(),
            ),
            runtime_env=env[1],
            task_events=o.get("enable_task_events", True),
        )

    def __repr__(self) -> str:
        return f"RemoteFunction({self._name})"
