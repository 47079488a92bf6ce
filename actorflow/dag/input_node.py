"""The graph's input: ``InputNode`` (a context manager, as in Ray) and parts of it."""

from __future__ import annotations

from typing import Any

from actorflow._private.errors import DAGInputError
from actorflow.dag.dag_node import DAGNode, _Execution

IN_CONTEXT_MANAGER = "__in_context_manager__"


class DAGInputData:
    """The input of an ``execute(*args, **kwargs)`` given more than one value: ``[i]`` reads a
    positional one, ``["name"]`` (or ``.name``) a keyword one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = list(args)
        self._kwargs = kwargs

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self._args[key]
        if isinstance(key, str):
            return self._kwargs[key]
        raise ValueError(f"the DAG's input is read with an int index or a str key, not {key!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._kwargs[name]
        except KeyError:
            raise AttributeError(f"the DAG's input has no keyword argument {name!r}") from None


class InputNode(DAGNode):
    """Where ``execute(...)``'s arguments enter the graph. Build the graph inside
    ``with InputNode() as inp:``; ``inp[0]``, ``inp["key"]`` and ``inp.attr`` read a part of the
    input. With one argument to execute, the node's value is that argument; with several (or
    keywords), a ``DAGInputData`` of them."""

    def __init__(self, *args: Any, input_type: Any = None, **kwargs: Any) -> None:
        if args or kwargs:
            raise ValueError(
                "InputNode should not take any args or kwargs: the input is given to "
                "dag.execute(...)"
            )
        super().__init__((), {}, {}, {})
        self.input_type = input_type
        self.input_attribute_nodes: dict[Any, InputAttributeNode] = {}

    def __enter__(self) -> InputNode:
        self._bound_other_args_to_resolve[IN_CONTEXT_MANAGER] = True
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def _in_context_manager(self) -> bool:
        return bool(self._bound_other_args_to_resolve.get(IN_CONTEXT_MANAGER))

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict[str, Any]) -> Any:
        if not self._in_context_manager():
            raise DAGInputError(
                "InputNode is a singleton instance that should be only used in context "
                "manager while the graph is built: with InputNode() as inp: dag = f.bind(inp)"
            )
        if run.input_uuid not in (None, self._stable_uuid):
            raise DAGInputError(
                "Each DAG should only have one unique InputNode; this one reaches two"
            )
        run.input_uuid = self._stable_uuid
        if len(run.args) == 1 and not run.kwargs:
            return run.args[0]
        return DAGInputData(*run.args, **run.kwargs)

    def __getitem__(self, key: int | str) -> InputAttributeNode:
        if not isinstance(key, (int, str)):
            raise DAGInputError(
                f"Please only use int index or str as first-level key to access fields of "
                f"the DAG's input, not {key!r}"
            )
        return self._attribute(key, "__getitem__")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("bind", "remote"):
            return super().__getattr__(name)
        return self._attribute(name, "__getattr__")

    def _attribute(self, key: int | str, accessor: str) -> InputAttributeNode:
        nodes = self.__dict__["input_attribute_nodes"]
        if (key, accessor) not in nodes:
            nodes[(key, accessor)] = InputAttributeNode(self, key, accessor)
        return nodes[(key, accessor)]

    def __repr__(self) -> str:
        return "InputNode()"


class InputAttributeNode(DAGNode):
    """One part of the graph's input: ``inp[0]``, ``inp["x"]`` or ``inp.x``."""

    def __init__(self, dag_input_node: InputNode, key: int | str, accessor_method: str) -> None:
        super().__init__(
            (),
            {},
            {},
            {"dag_input_node": dag_input_node, "key": key, "accessor_method": accessor_method},
        )
        self._dag_input_node = dag_input_node
        self._key = key
        self._accessor_method = accessor_method

    @property
    def key(self) -> int | str:
        return self._key

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict[str, Any]) -> Any:
        return read_part(run.value_of(self._dag_input_node), self._key, self._accessor_method)

    def __repr__(self) -> str:
        return f"InputNode()[{self._key!r}]"


def read_part(value: Any, key: int | str, accessor: str) -> Any:
    """The part of an execution's input an InputAttributeNode stands for."""
    if isinstance(key, str) and accessor == "__getattr__" and not isinstance(value, DAGInputData):
        return getattr(value, key)
    return value[key]
