"""A call's arguments as they travel: serialised once, large ones through the object store.

Top-level refs become slots that the owner resolves before the call is sent; plain values
(numbers, strings, bytes and lists or dicts of them) skip pickling; arguments above
``inline_object_max_bytes`` become an object of their own, kept for as long as the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorflow._private import errors, ids, serialization
from actorflow._private.config import Config
from actorflow._private.ownership.table import ObjectTable
from actorflow._private.runtime import Runtime
from actorflow._private.worker.object_ref import ObjectRef
from actorflow._private.worker.shared_objects import SharedObjects

# The wire of a call without arguments, and the nested refs of plain arguments: one object for
# every such call (read only, never changed), not fresh lists per queued call.
_NO_ARGUMENTS: list = [serialization.PLAIN, [[], {}]]
_NOTHING_NESTED: list = []
_NO_SLOTS: list = []


class ArgumentPacker:
    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        objects: ObjectTable,
        shared: SharedObjects,
        note_escaped: Callable[[list], None],
    ) -> None:
        self._runtime = runtime
        self._inline_max = config.inline_object_max_bytes
        self._objects = objects
        self._shared = shared
        self._note_escaped = note_escaped  # refs of ours were serialised: others may borrow

    def pack(self, fn_name: str, args: tuple, kwargs: dict) -> tuple[list, list, list]:
        """Top-level refs become slots the owner resolves before the task runs; the rest is
        serialized once (plain values skip pickling). Also returns the refs and handles found
        inside the arguments: the caller keeps them until the task is done."""
        if not args and not kwargs:  # shared: nothing changes a call's argument wire
            return _NO_ARGUMENTS, _NO_SLOTS, _NOTHING_NESTED
        slots: list = []
        arg_list = list(args)
        for i, value in enumerate(arg_list):
            if type(value) is ObjectRef:
                slots.append([i, value])
                arg_list[i] = None
        kw = dict(kwargs)
        for key, value in kwargs.items():
            if type(value) is ObjectRef:
                slots.append([key, value])
                kw[key] = None
        is_plain = serialization.is_plain
        if all(is_plain(v) for v in arg_list) and all(is_plain(v) for v in kw.values()):
            wire = [serialization.PLAIN, [arg_list, kw]]
            if _plain_size(arg_list, kw) <= self._inline_max:
                return wire, slots, _NOTHING_NESTED
            wire, ref = self._store_args(wire)
            return wire, slots, [ref]
        try:
            wire, nested = serialization.serialize_collecting_refs([arg_list, kw], views=True)
        except Exception as exc:
            raise self._unpicklable_argument(fn_name, arg_list, kw, exc) from exc
        self._note_escaped(nested)
        if serialization.size_of(wire) > self._inline_max:
            wire, ref = self._store_args(wire)
            nested = [*nested, ref]
        else:
            wire = serialization.inline(wire)
        return wire, slots, nested

    def _store_args(self, wire: list) -> tuple[list, Any]:
        """Large arguments go to the object store as an object of their own, kept for as long
        as the call: the returned ref is pinned with the call, and dropping it frees them."""
        obj_id = ids.object_id(ids.new_task_id(), 0)
        wire = self._shared.finish(obj_id, wire)
        self._objects.put(obj_id, wire)
        return wire, ObjectRef(obj_id, self._runtime.address)

    @staticmethod
    def _unpicklable_argument(
        fn_name: str, args: list, kwargs: dict, exc: Exception
    ) -> errors.SerializationError:
        named = [(f"argument {i}", v) for i, v in enumerate(args)]
        named += [(f"argument {k!r}", v) for k, v in kwargs.items()]
        for label, value in named:
            try:
                serialization.serialize(value)
            except Exception as inner:
                return errors.SerializationError(
                    f"could not serialize {label} of {fn_name}() (a {type(value).__name__}): "
                    f"{inner}"
                )
        return errors.SerializationError(f"could not serialize the arguments of {fn_name}(): {exc}")


def _plain_size(args: list, kwargs: dict) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in [*args, *kwargs.values()])
