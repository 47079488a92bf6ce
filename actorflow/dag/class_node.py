"""Actors in a DAG: ``ClassNode`` (``Cls.bind(...)``, an actor made when the graph runs) and
``ClassMethodNode`` (``actor.method.bind(...)``, on a ClassNode or on a live actor handle)."""

from __future__ import annotations

import itertools
from typing import Any

from actorflow.dag.dag_node import DAGNode, _Execution
from actorflow.dag.input_node import InputNode

PARENT_CLASS_NODE_KEY = "parent_class_node"
PREV_CLASS_METHOD_CALL_KEY = "prev_class_method_call"
BIND_INDEX_KEY = "bind_index"

# The order of bind() calls on live actors: a compiled graph runs one actor's methods in it.
_bind_order = itertools.count()


class ClassNode(DAGNode):
    """``Cls.bind(*args, **kwargs)``: each execution of the graph creates the actor (once per
    execution, however many of its methods the graph calls)."""

    def __init__(
        self,
        cls: Any,
        cls_args: tuple | list,
        cls_kwargs: dict[str, Any],
        cls_options: dict[str, Any],
        other_args_to_resolve: dict[str, Any] | None = None,
    ) -> None:
        self._body = cls
        self._last_call: ClassMethodNode | None = None
        super().__init__(cls_args, cls_kwargs, cls_options, other_args_to_resolve)
        if any(isinstance(n, InputNode) for n in self._get_all_child_nodes()):
            raise ValueError(
                "InputNode handles user dynamic input the the DAG, and cannot be used as args, "
                "kwargs, or other_args_to_resolve in ClassNode constructor because it is not "
                "available at class construction or binding time (pass it to a method instead)"
            )

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict[str, Any]) -> Any:
        body = self._body.options(**self._bound_options) if self._bound_options else self._body
        return body.remote(*args, **kwargs)

    def _copy_impl(self, options: dict[str, Any]) -> DAGNode:
        copy = ClassNode.__new__(ClassNode)
        copy.__dict__.update(self.__dict__)
        copy._bound_options = options
        return copy

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or "_body" not in self.__dict__:
            raise AttributeError(name)
        if name == "bind":
            raise AttributeError(f".bind() cannot be used again on {type(self).__name__}")
        if name == "remote":
            return super().__getattr__(name)
        cls = getattr(self._body, "_cls", None)
        if cls is not None and not callable(getattr(cls, name, None)):
            raise AttributeError(f"actor class {cls.__name__} has no method {name!r}")
        return _UnboundClassMethodNode(self, name, {})

    def __repr__(self) -> str:
        return f"ClassNode({getattr(self._body, '__name__', self._body)})"


class _UnboundClassMethodNode:
    """``class_node.method``: ``.bind(...)`` records a call on the actor the node makes, after
    the calls bound on it before."""

    def __init__(self, actor: ClassNode, method_name: str, options: dict[str, Any]) -> None:
        self._actor = actor
        self._method_name = method_name
        self._options = options

    def bind(self, *args: Any, **kwargs: Any) -> ClassMethodNode:
        node = ClassMethodNode(
            self._method_name,
            args,
            kwargs,
            self._options,
            {
                PARENT_CLASS_NODE_KEY: self._actor,
                PREV_CLASS_METHOD_CALL_KEY: self._actor._last_call,
            },
        )
        self._actor._last_call = node
        return node

    def options(self, **options: Any) -> _UnboundClassMethodNode:
        return _UnboundClassMethodNode(self._actor, self._method_name, {**self._options, **options})

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(
            ".remote() cannot be used on a method of a ClassNode: use .bind() to record the call"
        )


class ClassMethodNode(DAGNode):
    """``actor.method.bind(*args, **kwargs)``: executing it calls the method; on a ClassNode,
    after the calls bound on that ClassNode before it."""

    def __init__(
        self,
        method_name: str,
        method_args: tuple | list,
        method_kwargs: dict[str, Any],
        method_options: dict[str, Any],
        other_args_to_resolve: dict[str, Any],
    ) -> None:
        self._method_name = method_name
        self._parent_class_node = other_args_to_resolve.get(PARENT_CLASS_NODE_KEY)
        self._prev_class_method_call = other_args_to_resolve.get(PREV_CLASS_METHOD_CALL_KEY)
        self._bind_index = other_args_to_resolve.get(BIND_INDEX_KEY)
        super().__init__(method_args, method_kwargs, method_options, other_args_to_resolve)

    def get_method_name(self) -> str:
        return self._method_name

    def _get_actor_handle(self) -> Any:
        """The live actor this node calls (None when its actor is a ClassNode)."""
        parent = self._parent_class_node
        return None if isinstance(parent, DAGNode) else parent

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict[str, Any]) -> Any:
        handle = self._parent_class_node
        if isinstance(handle, DAGNode):
            if self._prev_class_method_call is not None:  # its calls before this one go first
                run.value_of(self._prev_class_method_call)
            handle = run.value_of(handle)
        method = getattr(handle, self._method_name)
        if self._bound_options:
            method = method.options(**self._bound_options)
        return method.remote(*args, **kwargs)

    def _copy_impl(self, options: dict[str, Any]) -> DAGNode:
        copy = ClassMethodNode.__new__(ClassMethodNode)
        copy.__dict__.update(self.__dict__)
        copy._bound_options = options
        return copy

    def __repr__(self) -> str:
        return f"ClassMethodNode({self._method_name}())"


def bind_actor_method(method: Any, args: tuple, kwargs: dict[str, Any]) -> ClassMethodNode:
    """``handle.method.bind(...)`` (installed on actor methods by ``actorflow.actor``)."""
    return ClassMethodNode(
        method._name,
        args,
        kwargs,
        dict(method._bound_options_for_dag()),
        {
            PARENT_CLASS_NODE_KEY: method._handle,
            PREV_CLASS_METHOD_CALL_KEY: None,
            BIND_INDEX_KEY: next(_bind_order),
        },
    )
