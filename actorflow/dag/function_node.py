"""``FunctionNode``: a remote function's call, bound (``f.bind(...)``)."""

from __future__ import annotations

from typing import Any

from actorflow.dag.dag_node import DAGNode, _Execution


class FunctionNode(DAGNode):
    """``f.bind(*args, **kwargs)``: executing it submits ``f.remote(*args, **kwargs)``."""

    def __init__(
        self,
        func_body: Any,
        func_args: tuple | list,
        func_kwargs: dict[str, Any],
        func_options: dict[str, Any],
        other_args_to_resolve: dict[str, Any] | None = None,
    ) -> None:
        self._body = func_body
        super().__init__(func_args, func_kwargs, func_options, other_args_to_resolve)

    def _execute_impl(self, run: _Execution, args: tuple, kwargs: dict[str, Any]) -> Any:
        body = self._body.options(**self._bound_options) if self._bound_options else self._body
        return body.remote(*args, **kwargs)

    def _copy_impl(self, options: dict[str, Any]) -> DAGNode:
        return FunctionNode(
            self._body,
            self._bound_args,
            self._bound_kwargs,
            options,
            self._bound_other_args_to_resolve,
        )

    def __repr__(self) -> str:
        return f"FunctionNode({getattr(self._body, '__name__', self._body)})"
