"""``MultiOutputNode``: a graph with several results."""

from __future__ import annotations

from typing import Any

from actorflow.dag.dag_node import DAGNode, _Execution


class MultiOutputNode(DAGNode):
    """The graph's results, in order: ``execute`` returns a list of them (refs)."""

    def __init__(self, args: list | tuple, other_args_to_resolve: dict[str, Any] | None = None):
        if isinstance(args, DAGNode) or not isinstance(args, (list, tuple)):
            raise ValueError(
                f"MultiOutputNode takes a list of DAG nodes, got {type(args).__name__}"
            )
        super().__init__(tuple(args), {}, {}, other_args_to_resolve)

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict[str, Any]) -> Any:
        return list(args)

    def __repr__(self) -> str:
        return f"MultiOutputNode({list(self._bound_args)!r})"
