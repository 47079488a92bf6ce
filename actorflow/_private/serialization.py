"""User values on the wire.

A serialized value is a small msgpack-ready list:

- ``[PLAIN, value]``: an int, float, str, bytes, bool or None of exactly that type, carried by
  msgpack as is (no pickling, and it comes back as exactly the same type);
- ``[PICKLED, data, buffers]``: cloudpickle protocol 5, with out-of-band buffers alongside so that
  large arrays are not copied into the pickle stream;
- ``[ERROR, data]``: a pickled exception; ``get`` raises it instead of returning it;
- ``[SHARED, node_id, segment file, object id, data length, buffer lengths]``: a large value in
  the node's shared-memory object store (see shm.py and shared_objects.py); readers on the node
  map it and get views, not copies.

ObjectRefs met while pickling are collected, so the owner learns which refs escaped.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle

PLAIN = 0
PICKLED = 1
ERROR = 2
SHARED = 3

_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None)})
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

_context = threading.local()
# Reads a value in the node's shared-memory store: set while this process is connected (by
# worker.context.set_core), so that this module needs nothing above it.
_read_shared: Callable[[list], Any] | None = None


def set_shared_reader(read: Callable[[list], Any] | None) -> None:
    global _read_shared
    _read_shared = read


# Refs pickled outside actorflow's own serialization (cloudpickle.dumps(ref) by the user): what
# is pickled there can come back at any time, so, as in Ray, they keep their objects alive for
# as long as this process lives (set by worker.context.set_core, with the reader above).
_keep_out_of_band: Callable[[Any], None] | None = None


def set_out_of_band_keeper(keep: Callable[[Any], None] | None) -> None:
    global _keep_out_of_band
    _keep_out_of_band = keep


def is_plain(value: Any) -> bool:
    kind = type(value)
    if kind not in _PLAIN_TYPES:
        return False
    return kind is not int or _INT_MIN <= value <= _INT_MAX


def serialize(value: Any) -> list:
    """Serialize a user value (see the module docstring for the format)."""
    if is_plain(value):
        return [PLAIN, value]
    buffers: list[pickle.PickleBuffer] = []
    data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    # A copy, as in Ray: the stored object must not change when the caller later mutates its
    # array. (The shared-memory store will make this the one copy into shared memory.)
    return [PICKLED, data, [bytes(b.raw()) for b in buffers]]


def serialize_views(value: Any) -> list:
    """Like serialize, but the out-of-band buffers are views onto the value, not copies: pass
    the result to inline() or to the object store, which makes the one copy."""
    if is_plain(value):
        return [PLAIN, value]
    buffers: list[pickle.PickleBuffer] = []
    data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return [PICKLED, data, [b.raw() for b in buffers]]


def inline(wire: list) -> list:
    """A wire from serialize_views, with its buffers copied (safe to keep and to send)."""
    if wire[0] == PICKLED and any(not isinstance(b, bytes) for b in wire[2]):
        return [PICKLED, wire[1], [bytes(b) for b in wire[2]]]
    return wire


def serialize_collecting_refs(value: Any, views: bool = False) -> tuple[list, list]:
    """Like serialize (or serialize_views), and also return the ObjectRefs found inside."""
    if is_plain(value):
        return [PLAIN, value], []
    found: list = []
    outer = getattr(_context, "refs", None)
    _context.refs = found
    try:
        return (serialize_views(value) if views else serialize(value)), found
    finally:
        _context.refs = outer


def serialize_named(value: Any, what: str, views: bool = False) -> tuple[list, list]:
    """serialize_collecting_refs, failing with a SerializationError that says what could not be
    serialized (for example "the return value of f()")."""
    try:
        return serialize_collecting_refs(value, views)
    except Exception as exc:
        from actorflow._private.errors import SerializationError

        raise SerializationError(
            f"could not serialize {what} (a {type(value).__name__}): {exc}"
        ) from exc


def note_ref_pickled(ref: Any) -> None:
    """Called by ObjectRef.__reduce__: record the ref in the current collection, or keep its
    object alive if it is pickled out of band."""
    refs = getattr(_context, "refs", None)
    if refs is not None:
        refs.append(ref)
    elif _keep_out_of_band is not None:
        _keep_out_of_band(ref)


def serialize_error(exc: BaseException) -> list:
    try:
        return [ERROR, cloudpickle.dumps(exc, protocol=5)]
    except Exception as pickling_problem:  # the exception itself cannot be pickled
        from actorflow._private.errors import ActorflowError

        stand_in = ActorflowError(
            f"{type(exc).__name__}: {exc} (the original exception could "
            f"not be pickled: {pickling_problem})"
        )
        return [ERROR, cloudpickle.dumps(stand_in, protocol=5)]


def deserialize(wire: list) -> Any:
    """Return the value; for an error value, return the exception (use is_error to tell)."""
    kind = wire[0]
    if kind == PLAIN:
        return wire[1]
    if kind == PICKLED:
        return pickle.loads(wire[1], buffers=wire[2])
    if kind == ERROR:
        return pickle.loads(wire[1])
    if kind == SHARED:
        if _read_shared is None:
            raise RuntimeError("a value in the object store can only be read while connected")
        return _read_shared(wire)
    raise ValueError(f"unknown serialized value kind {kind!r}")


def is_error(wire: list) -> bool:
    return wire[0] == ERROR


def size_of(wire: list) -> int:
    """Approximate size in bytes, to decide inline vs. object store."""
    kind = wire[0]
    if kind == PLAIN:
        v = wire[1]
        return len(v) if isinstance(v, (str, bytes)) else 8
    if kind == PICKLED:
        return len(wire[1]) + sum(memoryview(b).nbytes for b in wire[2])
    if kind == SHARED:
        return wire[4] + sum(wire[5])
    return len(wire[1])
