"""The in-process memory store: values of objects this process owns or has fetched.

Values are kept serialized (the wire form, see serialization.py) and deserialized by each reader,
so every ``get`` returns a fresh value, as with Ray. An entry is pending until its value arrives;
callbacks registered on a pending entry run (on the runtime loop) when it is set.

Thread-safe: user threads read and put, the runtime loop sets results. ObjectRef.__del__ may run
inside any allocation, even one made while this thread holds the table's lock, so releases are
queued and applied by whoever holds (or next takes) the lock, never waited for.

Local reference counts come from ObjectRef instances in this process (including refs kept alive
because an object, a pending task or a value in flight holds them). The owner's entry also
counts borrowers: other processes that registered a ref to it (see core_worker.py). An entry
goes when nothing counts it; ``on_drop(obj_id, entry)`` runs then, after the lock is let go.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

MISSING: Any = object()  # wait_or_get: no such object here


class _Entry:
    __slots__ = ("wire", "callbacks", "refs", "owned", "owner", "borrowers", "pinned")

    def __init__(self, owned: bool, owner: str = "") -> None:
        self.wire: list | None = None
        self.callbacks: list[Callable[[list], None]] | None = None
        self.refs = 0
        self.owned = owned
        self.owner = owner  # of a borrowed entry: where to send the release
        self.borrowers: set[str] | None = None  # of an owned entry: processes holding refs
        self.pinned = 0  # in use as an argument of a pending task


class ObjectTable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[bytes, _Entry] = {}
        self._released: deque[bytes] = deque()  # refs dropped, not yet counted
        self._dropped: list[tuple[bytes, _Entry]] = []  # entries gone, on_drop not yet run
        self.on_drop: Callable[[bytes, _Entry], None] | None = None

    # `with self:` holds the lock; letting go applies queued releases and runs on_drop.
    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        if self._released:
            self._apply_releases()
        if self._dropped:
            dropped, self._dropped = self._dropped, []
            self._lock.release()
            self._notify(dropped)
        else:
            self._lock.release()
        if self._released:
            self._drain_releases()

    def _drain_releases(self) -> None:
        """Apply queued releases, unless another thread (or this one, further up its stack)
        holds the lock: it applies them before letting go."""
        while self._released and self._lock.acquire(blocking=False):
            try:
                self._apply_releases()
                dropped, self._dropped = self._dropped, []
            finally:
                self._lock.release()
            self._notify(dropped)

    def _notify(self, dropped: list[tuple[bytes, _Entry]]) -> None:
        if self.on_drop is not None:
            for obj_id, entry in dropped:
                self.on_drop(obj_id, entry)

    def _apply_releases(self) -> None:
        while self._released:
            obj_id = self._released.popleft()
            entry = self._entries.get(obj_id)
            if entry is not None:
                entry.refs -= 1
                self._maybe_drop(obj_id, entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, obj_id: bytes) -> bool:
        return obj_id in self._entries

    # -- creation and values --------------------------------------------------------------------

    def add_pending(self, obj_id: bytes, owned: bool = True, owner: str = "") -> None:
        with self:
            if obj_id not in self._entries:
                self._entries[obj_id] = _Entry(owned, owner)

    def put(self, obj_id: bytes, wire: list, owned: bool = True) -> list[Callable[[list], None]]:
        """Store a value; return the callbacks that waited for it (run them on the loop)."""
        with self:
            entry = self._entries.get(obj_id)
            if entry is None:  # a new value (put): its ObjectRef is made right after
                entry = self._entries[obj_id] = _Entry(owned)
            elif entry.wire is not None:
                return []  # first value wins (a retried task may answer twice)
            else:
                entry.wire = wire
                callbacks, entry.callbacks = entry.callbacks, None
                # Nobody holds a ref any more: the value arrived for no one.
                if self._unused(entry):
                    self._drop(obj_id, entry)
                return callbacks or []
            entry.wire = wire
            return []
        return callbacks or []

    def reset(self, obj_id: bytes) -> bool:
        """The value is lost and is being made again: the entry is pending once more (readers
        wait for the new value). False if the object is not here."""
        with self:
            entry = self._entries.get(obj_id)
            if entry is None:
                return False
            entry.wire = None
            return True

    def replace_wire(self, obj_id: bytes, wire: list) -> list[Callable[[list], None]]:
        """Where the value is has changed (another copy, or it was made again): store the new
        wire even over an old one; return the callbacks that waited for it."""
        with self:
            entry = self._entries.get(obj_id)
            if entry is None:
                return []
            entry.wire = wire
            callbacks, entry.callbacks = entry.callbacks, None
            return callbacks or []

    def owner_of(self, obj_id: bytes) -> str | None:
        """The owner's address of an object known here ("" if we own it), None if unknown."""
        entry = self._entries.get(obj_id)
        if entry is None:
            return None
        return "" if entry.owned else entry.owner

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
        with self:
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
        with self:
            entry = self._entries.get(obj_id)
            if entry is not None and entry.callbacks and callback in entry.callbacks:
                entry.callbacks.remove(callback)

    # -- reference counting ---------------------------------------------------------------------

    def add_ref(
        self,
        obj_id: bytes,
        owned: bool,
        owner: str = "",
        lost_wire: Callable[[], list] | None = None,
    ) -> bool:
        """Count a ref. An owned object this table does not have was freed (or never
        existed): its entry gets the value lost_wire() so that reading it fails at once.
        True when this is the first ref to a borrowed object (register with its owner)."""
        with self:
            entry = self._entries.get(obj_id)
            if entry is None:
                entry = self._entries[obj_id] = _Entry(owned, owner)
                if owned and lost_wire is not None:
                    entry.wire = lost_wire()
            entry.refs += 1
            if not entry.owned and entry.refs == 1 and not entry.owner:
                entry.owner = owner
            return not entry.owned and entry.refs == 1

    def release_ref(self, obj_id: bytes) -> None:
        """A ref went (from ObjectRef.__del__: any thread, any moment)."""
        self._released.append(obj_id)
        if self._lock.acquire(blocking=False):
            self.__exit__()

    def add_borrower(self, obj_id: bytes, borrower: str) -> bool:
        """False if the object is not (or no longer) here."""
        with self:
            entry = self._entries.get(obj_id)
            if entry is None or not entry.owned:
                return False
            if entry.borrowers is None:
                entry.borrowers = set()
            entry.borrowers.add(borrower)
            return True

    def remove_borrower(self, obj_id: bytes, borrower: str) -> None:
        with self:
            entry = self._entries.get(obj_id)
            if entry is not None and entry.borrowers:
                entry.borrowers.discard(borrower)
                self._maybe_drop(obj_id, entry)

    def borrowers_of(self, obj_id: bytes) -> set[str]:
        entry = self._entries.get(obj_id)
        return set(entry.borrowers) if entry is not None and entry.borrowers else set()

    def pin(self, obj_id: bytes) -> None:
        with self:
            entry = self._entries.get(obj_id)
            if entry is not None:
                entry.pinned += 1

    def unpin(self, obj_id: bytes) -> None:
        with self:
            entry = self._entries.get(obj_id)
            if entry is not None:
                entry.pinned -= 1
                self._maybe_drop(obj_id, entry)

    def discard_if_unreferenced(self, obj_id: bytes) -> None:
        with self:
            entry = self._entries.get(obj_id)
            if entry is not None and self._unused(entry):
                self._drop(obj_id, entry)

    @staticmethod
    def _unused(entry: _Entry) -> bool:
        return entry.refs <= 0 and entry.pinned <= 0 and not entry.borrowers

    def _maybe_drop(self, obj_id: bytes, entry: _Entry) -> None:
        # A pending entry is kept while its task runs (callbacks may be waiting).
        if (
            self._unused(entry)
            and (entry.wire is not None or not entry.owned)
            and not entry.callbacks
        ):
            self._drop(obj_id, entry)

    def _drop(self, obj_id: bytes, entry: _Entry) -> None:
        del self._entries[obj_id]
        self._dropped.append((obj_id, entry))

    def records(self) -> list[tuple[bytes, _Entry]]:
        with self:
            return list(self._entries.items())

    def stats(self) -> dict[str, Any]:
        with self:
            return {
                "objects": len(self._entries),
                "ready": sum(1 for e in self._entries.values() if e.wire is not None),
                "bytes": sum(
                    len(e.wire[1])
                    for e in self._entries.values()
                    if e.wire is not None and isinstance(e.wire[1], (bytes, str))
                ),
            }
