"""The in-process memory store: values of objects this process owns or has fetched.

Values are kept serialized (the wire form, see serialization.py) and deserialized by each reader,
so every ``get`` returns a fresh value, as with Ray. An entry is pending until its value arrives;
callbacks registered on a pending entry run (on the runtime loop) when it is set.

Thread-safe: user threads read and put, the runtime loop sets results. Local reference counts
come from ObjectRef instances in this process; an entry whose count drops to zero is dropped
unless it escaped to another process (then the owner keeps it: a borrower may still ask).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

MISSING: Any = object()  # wait_or_get: no such object here


class _Entry:
    __slots__ = ("wire", "callbacks", "refs", "owned", "escaped", "pinned")

    def __init__(self, owned: bool) -> None:
        self.wire: list | None = None
        self.callbacks: list[Callable[[list], None]] | None = None
        self.refs = 0
        self.owned = owned
        self.escaped = False
        self.pinned = 0  # in use as an argument of a pending task


class ObjectTable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[bytes, _Entry] = {}
        self.on_drop: Callable[[bytes], None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, obj_id: bytes) -> bool:
        return obj_id in self._entries

    # -- creation and values --------------------------------------------------------------------

    def add_pending(self, obj_id: bytes, owned: bool = True) -> None:
        with self._lock:
            if obj_id not in self._entries:
                self._entries[obj_id] = _Entry(owned)

    def put(self, obj_id: bytes, wire: list,
            owned: bool = True) -> list[Callable[[list], None]]:
        """Store a value; return the callbacks that waited for it (run them on the loop)."""
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is None:  # a new value (put): its ObjectRef is made right after
                entry = self._entries[obj_id] = _Entry(owned)
            elif entry.wire is not None:
                return []  # first value wins (a retried task may answer twice)
            else:
                entry.wire = wire
                callbacks, entry.callbacks = entry.callbacks, None
                # Nobody holds a ref any more: the value arrived for no one.
                if entry.refs <= 0 and not entry.pinned and not entry.escaped:
                    self._drop(obj_id)
                return callbacks or []
            entry.wire = wire
            return []
        return callbacks or []

    def get_wire(self, obj_id: bytes) -> list | None:
        entry = self._entries.get(obj_id)
        return None if entry is None else entry.wire

    def is_known(self, obj_id: bytes) -> bool:
        return obj_id in self._entries

    def is_owned(self, obj_id: bytes) -> bool:
        entry = self._entries.get(obj_id)
        return entry is not None and entry.owned

    def wait_or_get(self, obj_id: bytes, callback: Callable[[list], None]) -> Any:
        """Return the value if there is one, MISSING if the object is unknown here, or None after
        registering callback(wire) to run when the value arrives."""
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is None:
                return MISSING
            if entry.wire is not None:
                return entry.wire
            if entry.callbacks is None:
                entry.callbacks = [callback]
            else:
                entry.callbacks.append(callback)
            return None

    def remove_callback(self, obj_id: bytes, callback: Callable[[list], None]) -> None:
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is not None and entry.callbacks and callback in entry.callbacks:
                entry.callbacks.remove(callback)

    # -- reference counting ---------------------------------------------------------------------

    def add_ref(self, obj_id: bytes, owned: bool,
                lost_wire: Callable[[], list] | None = None) -> None:
        """Count a ref. An owned object this table does not have was freed (or never
        existed): its entry gets the value lost_wire() so that reading it fails at once."""
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is None:
                entry = self._entries[obj_id] = _Entry(owned)
                if owned and lost_wire is not None:
                    entry.wire = lost_wire()
            entry.refs += 1

    def release_ref(self, obj_id: bytes) -> None:
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is None:
                return
            entry.refs -= 1
            self._maybe_drop(obj_id, entry)

    def mark_escaped(self, obj_id: bytes) -> None:
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is not None:
                entry.escaped = True

    def pin(self, obj_id: bytes) -> None:
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is not None:
                entry.pinned += 1

    def unpin(self, obj_id: bytes) -> None:
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is not None:
                entry.pinned -= 1
                self._maybe_drop(obj_id, entry)

    def discard_if_unreferenced(self, obj_id: bytes) -> None:
        with self._lock:
            entry = self._entries.get(obj_id)
            if entry is not None and entry.refs <= 0 and not entry.escaped and not entry.pinned:
                self._drop(obj_id)

    def _maybe_drop(self, obj_id: bytes, entry: _Entry) -> None:
        # A pending entry is kept while its task runs (callbacks may be waiting), and an entry
        # that escaped to another process is kept while this process lives.
        if (entry.refs <= 0 and entry.pinned <= 0 and not entry.escaped
                and (entry.wire is not None or not entry.owned) and not entry.callbacks):
            self._drop(obj_id)

    def _drop(self, obj_id: bytes) -> None:
        del self._entries[obj_id]
        if self.on_drop is not None:
            self.on_drop(obj_id)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "objects": len(self._entries),
                "ready": sum(1 for e in self._entries.values() if e.wire is not None),
                "bytes": sum(len(e.wire[1]) for e in self._entries.values()
                             if e.wire is not None and isinstance(e.wire[1], (bytes, str))),
            }
