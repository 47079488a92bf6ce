"""Messages as NamedTuples: declared once, checked on arrival.

``@message("core", "borrow_objects")`` on a NamedTuple records where it goes and, from its
annotations, what each field must be. ``decode(Kind, payload)`` turns a received payload into a
Kind or raises MalformedMessageError; fields with a default may be left off the end of the array
(older senders). Checks are shallow (the field's own type, not its elements): enough to turn a
malformed frame into a clear error instead of an IndexError deep in a handler, and cheap enough
for the per-call messages.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from actorflow._private import errors

T = TypeVar("T")

# What a field's annotation accepts on arrival; msgpack turns tuples into lists, and an int may
# stand for a float.
_ACCEPTS: dict[Any, tuple[type, ...]] = {
    bytes: (bytes,),
    str: (str,),
    bool: (bool, int),
    int: (int,),
    float: (float, int),
    list: (list, tuple),
    dict: (dict,),
}


def _accepted(annotation: Any) -> tuple[type, ...] | None:
    """The types a value of this annotation may have, or None for anything."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_accepted(arg) for arg in typing.get_args(annotation)]
        if any(p is None for p in parts):
            return None
        return tuple(t for p in parts for t in p)  # type: ignore[union-attr]
    if annotation is type(None):
        return (type(None),)
    base = origin if origin is not None else annotation
    return _ACCEPTS.get(base)


_tuple_new = tuple.__new__  # bound once: decode builds a message per task and actor call
_NAMES = {list: "array", tuple: "", dict: "map", type(None): "nil"}
_ARRAYS = (list, tuple)


@dataclass(frozen=True)
class Spec:
    """Where a kind of message goes and what its fields must be."""

    target: str
    method: str
    fields: tuple[str, ...]
    required: int  # fields without a default: the shortest payload accepted
    checks: tuple[tuple[int, str, tuple[type, ...]], ...]  # (index, name, accepted types)
    # What each field accepts, in order (object: anything): checked in one C-level pass.
    accepted: tuple[Any, ...]

    def describe(self) -> str:
        return f"{self.method} message to {self.target!r}"


SPECS: dict[type, Spec] = {}
# (required, size, accepted) of each kind, for decode's fast path.
_SHAPES: dict[type, tuple[int, int, tuple[Any, ...]]] = {}


def message(target: str, method: str) -> Callable[[type[T]], type[T]]:
    """Declare a NamedTuple as the message method of the actor registered as target."""

    def declare(kind: type[T]) -> type[T]:
        hints = typing.get_type_hints(kind)
        fields: tuple[str, ...] = kind._fields  # type: ignore[attr-defined]
        defaults: dict[str, Any] = kind._field_defaults  # type: ignore[attr-defined]
        checks = tuple(
            (index, name, accepted)
            for index, name in enumerate(fields)
            if (accepted := _accepted(hints[name])) is not None
        )
        by_field = {index: accepted for index, _name, accepted in checks}
        SPECS[kind] = Spec(
            target,
            method,
            fields,
            len(fields) - len(defaults),
            checks,
            tuple(by_field.get(index, object) for index in range(len(fields))),
        )
        spec = SPECS[kind]
        _SHAPES[kind] = (spec.required, len(fields), spec.accepted)
        return kind

    return declare


def spec_of(kind: type) -> Spec:
    return SPECS[kind]


def decode(kind: type[T], payload: Any) -> T:
    """The payload as a kind, or MalformedMessageError naming what is wrong."""
    required, size, accepted = _SHAPES[kind]
    # The common case, cheaply (it runs for every task and actor call): a whole, well-typed
    # array. map() stops at the payload's end, so omitted trailing fields are not checked.
    if isinstance(payload, _ARRAYS):  # a list off the wire; a message itself within a process
        length = len(payload)
        if length == size and all(map(isinstance, payload, accepted)):
            return _tuple_new(kind, payload)  # type: ignore[type-var]
        if required <= length < size and all(map(isinstance, payload, accepted)):
            return kind(*payload)
    raise _malformed(SPECS[kind], payload)


def _malformed(spec: Spec, payload: Any) -> errors.MalformedMessageError:
    """What is wrong with a payload that decode refused."""
    if not isinstance(payload, (list, tuple)) or not (
        spec.required <= len(payload) <= len(spec.fields)
    ):
        return errors.MalformedMessageError(
            f"{spec.describe()} must be an array [{', '.join(spec.fields)}], got "
            f"{_describe(payload)}"
        )
    for index, name, accepted in spec.checks:
        if index < len(payload) and not isinstance(payload[index], accepted):
            wanted = " or ".join(
                dict.fromkeys(n for t in accepted if (n := _NAMES.get(t, t.__name__)))
            )
            return errors.MalformedMessageError(
                f"{spec.describe()}: field {name} must be {wanted}, got {_describe(payload[index])}"
            )
    return errors.MalformedMessageError(f"{spec.describe()} is malformed")


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)}"
    return "nil" if value is None else f"{type(value).__name__} {value!r:.40}"
