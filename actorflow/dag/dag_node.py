"""The lazy DAG API's base node (Ray's ``ray.dag.DAGNode``).

A node records a call that has not been made: what to call, its bound arguments (plain values,
refs, or other nodes, also inside lists, tuples and dicts) and its options. ``execute(...)``
walks the graph below the node, makes every call once, and returns what the node's call
returns (an ObjectRef, an actor handle, or a list of refs for a ``MultiOutputNode``). A graph is
built once, pickles like any value, and can be executed any number of times.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

# CompiledDAG.build, registered by actorflow.dag (the compiler sits above the nodes it reads).
_compiler: list[Callable[..., Any]] = []


class DAGNode:
    """A call bound to its arguments, made when the graph is executed."""

    def __init__(
        self,
        args: tuple | list,
        kwargs: dict[str, Any],
        options: dict[str, Any],
        other_args_to_resolve: dict[str, Any] | None = None,
    ) -> None:
        self._bound_args: tuple = tuple(args or ())
        self._bound_kwargs: dict[str, Any] = dict(kwargs or {})
        self._bound_options: dict[str, Any] = dict(options or {})
        self._bound_other_args_to_resolve: dict[str, Any] = dict(other_args_to_resolve or {})
        # The same across copies of this node (options(), pickling): the key of its result.
        self._stable_uuid = uuid.uuid4().hex

    # -- Ray's accessors ------------------------------------------------------------------------

    def get_args(self) -> tuple:
        return self._bound_args

    def get_kwargs(self) -> dict[str, Any]:
        return self._bound_kwargs

    def get_options(self) -> dict[str, Any]:
        return self._bound_options

    def get_other_args_to_resolve(self) -> dict[str, Any]:
        return self._bound_other_args_to_resolve

    def get_stable_uuid(self) -> str:
        return self._stable_uuid

    # -- the graph ------------------------------------------------------------------------------

    def _get_toplevel_child_nodes(self) -> list[DAGNode]:
        """The nodes this one's call reads (its arguments, nested ones included), each once, in
        the order they are bound."""
        found: dict[str, DAGNode] = {}
        for value in (self._bound_args, self._bound_kwargs, self._bound_other_args_to_resolve):
            for node in _nodes_in(value):
                found.setdefault(node._stable_uuid, node)
        return list(found.values())

    def _get_all_child_nodes(self) -> list[DAGNode]:
        """Every node below this one, each once."""
        seen: dict[str, DAGNode] = {}
        stack = self._get_toplevel_child_nodes()
        while stack:
            node = stack.pop()
            if node._stable_uuid not in seen:
                seen[node._stable_uuid] = node
                stack.extend(node._get_toplevel_child_nodes())
        return list(seen.values())

    def apply_recursive(self, fn: Callable[[DAGNode], Any]) -> Any:
        """fn applied to every node from the leaves up, each node once (its result reused)."""
        cache: dict[str, Any] = {}
        return self._apply(fn, cache)

    def _apply(self, fn: Callable[[DAGNode], Any], cache: dict[str, Any]) -> Any:
        if self._stable_uuid not in cache:
            cache[self._stable_uuid] = fn(self)
        return cache[self._stable_uuid]

    # -- execution ------------------------------------------------------------------------------

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Make every call in the graph once, with args/kwargs as the graph's input (its
        ``InputNode``), and return this node's result: a ref, an actor handle, or a list."""
        run = _Execution(args, kwargs)
        return run.value_of(self)

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict[str, Any]) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be executed")

    def _copy_impl(self, options: dict[str, Any]) -> DAGNode:
        raise TypeError(f"{type(self).__name__} has no options")

    def options(self, **options: Any) -> DAGNode:
        """A copy of this bound call with these options changed (the same node for the graph:
        executing both makes the call once)."""
        merged = dict(self._bound_options)
        merged.update(options)
        copy = self._copy_impl(merged)
        copy._stable_uuid = self._stable_uuid
        return copy

    def experimental_compile(
        self,
        _submit_timeout: float | None = None,
        _buffer_size_bytes: int | None = None,
        enable_asyncio: bool = False,
        _max_inflight_executions: int | None = None,
        _max_buffered_results: int | None = None,
        _overlap_gpu_communication: bool | None = None,
        _default_communicator: Any = "create",
        _socket_channels: bool = False,
    ) -> Any:
        """A compiled graph of this DAG of actor method calls: channels between the actors set
        up once, each actor running its part in a loop (see ``compiled_dag_node``).
        ``_socket_channels`` (actorflow's): sockets between all ends, as between machines,
        even where shared memory would do."""
        if not _compiler:
            raise RuntimeError("compiled graphs are not loaded: import actorflow.dag")
        if self.__dict__.get("is_cgraph_output_node"):
            raise ValueError(  # as Ray: one compiled graph per DAG object
                "experimental_compile() was already called on this DAG object (torn down or "
                "not): reuse that compiled graph, or build the DAG again and compile that"
            )
        self.is_cgraph_output_node = True
        return _compiler[0](
            self,
            submit_timeout=_submit_timeout,
            buffer_size_bytes=_buffer_size_bytes,
            enable_asyncio=enable_asyncio,
            max_inflight_executions=_max_inflight_executions,
            socket_channels=_socket_channels,
            max_buffered_results=_max_buffered_results,
        )

    # -- pickling and misuse --------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        if name == "bind":
            raise AttributeError(f".bind() cannot be used again on {type(self).__name__}")
        if name == "remote":
            raise AttributeError(
                f".remote() cannot be used on {type(self).__name__}: to run the graph of this "
                f"node, use .execute()"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class _Execution:
    """One ``execute(...)``: the input, and every node's result made so far."""

    def __init__(self, args: tuple, kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs
        self.results: dict[str, Any] = {}
        self.input_uuid: str | None = None

    def value_of(self, node: DAGNode) -> Any:
        key = node._stable_uuid
        if key not in self.results:
            args = self.resolve(node._bound_args)
            kwargs = self.resolve(node._bound_kwargs)
            self.results[key] = node._execute_impl(self, args, kwargs)
        return self.results[key]

    def resolve(self, value: Any) -> Any:
        """value with every node in it replaced by that node's result (containers rebuilt)."""
        if isinstance(value, DAGNode):
            return self.value_of(value)
        if type(value) in (list, tuple):
            return type(value)(self.resolve(v) for v in value)
        if type(value) is dict:
            return {k: self.resolve(v) for k, v in value.items()}
        return value


def _nodes_in(value: Any) -> list[DAGNode]:
    """The DAG nodes in value, looking inside plain lists, tuples, sets and dicts."""
    if isinstance(value, DAGNode):
        return [value]
    if type(value) in (list, tuple, set, frozenset):
        return [n for v in value for n in _nodes_in(v)]
    if type(value) is dict:
        return [n for v in value.values() for n in _nodes_in(v)]
    return []
