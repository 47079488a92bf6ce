"""What a compiled graph's ``execute`` returns (Ray's ``ray.experimental.compiled_dag_ref``)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any


class CompiledDAGRef:
    """The result of one execution of a compiled graph (one of its outputs). ``get`` it (or
    ``actorflow.get`` it) once; ``await`` it from asyncio code."""

    def __init__(self, dag: Any, execution_index: int, channel_index: int = 0) -> None:
        self._dag = dag
        self._execution_index = execution_index
        self._channel_index = channel_index
        self._get_called = False

    def get(self, timeout: float | None = None) -> Any:
        if self._get_called:
            raise ValueError("get() can only be called once on a CompiledDAGRef, and it was")
        value = self._dag._get(self._execution_index, self._channel_index, timeout)
        self._get_called = True
        return value

    def __del__(self) -> None:
        # Never got: its result, read off the channels or still to come, is not kept.
        if not self.__dict__.get("_get_called", True):
            self._dag._drop(self._execution_index, self._channel_index)

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.to_thread(self.get).__await__()

    def __repr__(self) -> str:
        return f"CompiledDAGRef(execution={self._execution_index}, output={self._channel_index})"

    def __reduce__(self) -> Any:
        raise ValueError("a CompiledDAGRef cannot be pickled or passed to tasks: get it first")

    def __copy__(self) -> Any:
        raise ValueError("a CompiledDAGRef cannot be copied")

    def __deepcopy__(self, memo: Any) -> Any:
        raise ValueError("a CompiledDAGRef cannot be copied")


class CompiledDAGFuture:
    """What ``await compiled.execute_async(...)`` gives: ``await`` it for the value."""

    def __init__(self, ref: CompiledDAGRef) -> None:
        self._ref = ref

    def __await__(self) -> Generator[Any, None, Any]:
        return self._ref.__await__()

    def __repr__(self) -> str:
        return f"CompiledDAGFuture({self._ref!r})"
