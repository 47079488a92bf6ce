"""``num_returns="dynamic"`` (Ray's older generator API): the task's one return value is a
DynamicObjectRefGenerator holding a ref per item the generator yielded, each put in the object
store by the worker as it is produced. If the generator raises, the error is the last ref (as in
Ray)."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from actorflow._private.worker import context
from actorflow._private.worker.executor import task_error
from actorflow._private.worker.object_ref import DynamicObjectRefGenerator


def dynamic_returns(fn: Any) -> Any:
    """fn (a generator function) as a function that returns a DynamicObjectRefGenerator."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> DynamicObjectRefGenerator:
            core = context.ensure_core()
            refs = []
            try:
                async for item in fn(*args, **kwargs):
                    refs.append(core.put(item))
            except Exception as exc:
                refs.append(core.put_error(task_error(fn.__qualname__, exc)))
            return DynamicObjectRefGenerator(refs)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> DynamicObjectRefGenerator:
        produced = fn(*args, **kwargs)
        if not inspect.isgenerator(produced):
            raise TypeError(
                f"num_returns='dynamic' needs a generator function; {fn.__qualname__}() "
                f"returned a {type(produced).__name__}"
            )
        core = context.ensure_core()
        refs = []
        try:
            for item in produced:
                refs.append(core.put(item))
        except Exception as exc:
            refs.append(core.put_error(task_error(fn.__qualname__, exc)))
        return DynamicObjectRefGenerator(refs)

    return run
