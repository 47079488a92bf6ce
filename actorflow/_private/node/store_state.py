"""The bookkeeping of a node's object store, as a plain state object (no I/O, no asyncio).

Objects live in segments (shared-memory files, see shm.py). A segment freed by its owner goes to
a pool, so the next object of about its size reuses memory that is already faulted in: that is
what lets a put run at memcpy speed. A freed segment enters the pool only once no process
still has views onto it (readers register while they map an object), because reusing it under
a live numpy array would change that array.

Capacity: segments in use plus pooled ones must fit in ``capacity`` bytes. To make room the
store first drops pooled segments, then spills sealed objects that nobody has mapped, least
recently used first, to files on disk; ``make_room`` says which (the actor does the I/O).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

WRITING, SEALED, SPILLING, SPILLED = "writing", "sealed", "spilling", "spilled"
SEGMENT_GRANULE = 64 * 1024


def segment_size(nbytes: int) -> int:
    return max(SEGMENT_GRANULE, (nbytes + SEGMENT_GRANULE - 1) // SEGMENT_GRANULE * SEGMENT_GRANULE)


@dataclass(eq=False)
class Segment:
    name: str
    capacity: int
    pooled_at: float = 0.0


@dataclass(eq=False)
class StoredObject:
    obj_id: bytes
    size: int
    owner: str
    segment: Segment | None
    state: str = WRITING
    readers: set[str] = field(default_factory=set)
    freed: bool = False  # the owner freed it; it goes once the last reader lets go
    last_used: float = field(default_factory=time.monotonic)
    spill_path: str = ""
    writer: str = ""  # the process filling it, while WRITING
    no_reuse: bool = False  # its segment is unlinked, not pooled, when it goes
    pulled_from: str = ""  # a copy pulled from that node's store (object_transfer.py)


class StoreFullError(Exception):
    def __init__(self, asked: int, capacity: int, pinned: int, used: int) -> None:
        super().__init__(asked, capacity, pinned, used)
        self.asked, self.capacity, self.pinned, self.used = asked, capacity, pinned, used


class StoreState:
    def __init__(self, capacity: int, pool_fraction: float = 0.5) -> None:
        self.capacity = capacity
        self.pool_limit = int(capacity * pool_fraction)
        self.objects: dict[bytes, StoredObject] = {}
        self.pool: list[Segment] = []
        self.used = 0  # bytes of segments that exist: in use or pooled
        self.spilled_bytes = 0
        self.spill_count = 0
        self.dead_spill_files: list[str] = []  # spill files of freed objects, to delete
        self._names = itertools.count()

    # -- creating -------------------------------------------------------------------------------

    def new_segment_name(self) -> str:
        return f"s{next(self._names)}"

    def allocate(
        self, obj_id: bytes, nbytes: int, owner: str, writer: str = ""
    ) -> tuple[Segment, bool]:
        """A segment for a new object: a pooled one of about the right size, or a new one
        (True). The caller made room first (make_room); raises StoreFullError if it did not."""
        if obj_id in self.objects:
            raise ValueError(f"object {obj_id.hex()} is already in the store")
        segment = self._take_pooled(nbytes)
        fresh = segment is None
        if segment is None:
            size = segment_size(nbytes)
            if self.used + size > self.capacity:
                raise self.full_error(size)
            segment = Segment(self.new_segment_name(), size)
            self.used += size
        self.objects[obj_id] = StoredObject(obj_id, nbytes, owner, segment, writer=writer)
        return segment, fresh

    def adopt(self, obj_id: bytes, nbytes: int, owner: str, name: str) -> Segment:
        """A writer that could not wait for allocate made its own segment (see
        shared_objects.py); count it. It may take the store over capacity until room is made."""
        segment = Segment(name, segment_size(nbytes))
        self.used += segment.capacity
        self.objects[obj_id] = StoredObject(obj_id, nbytes, owner, segment, state=SEALED)
        return segment

    def _take_pooled(self, nbytes: int) -> Segment | None:
        best: Segment | None = None
        for segment in self.pool:  # the smallest that fits without wasting more than half
            if nbytes <= segment.capacity <= 2 * segment_size(nbytes) and (
                best is None or segment.capacity < best.capacity
            ):
                best = segment
        if best is not None:
            self.pool.remove(best)
        return best

    def seal(self, obj_id: bytes) -> None:
        obj = self.objects.get(obj_id)
        if obj is not None and obj.state == WRITING:
            obj.state = SEALED
            obj.last_used = time.monotonic()

    def abort(self, obj_id: bytes) -> Segment | None:
        """The writer failed: forget the object; its segment is returned to be unlinked."""
        obj = self.objects.pop(obj_id, None)
        if obj is None:
            return None
        if obj.state == SPILLED:
            self.spilled_bytes -= obj.size
            self.dead_spill_files.append(obj.spill_path)
        if obj.segment is None:
            return None
        self.used -= obj.segment.capacity
        return obj.segment

    # -- readers and freeing --------------------------------------------------------------------

    def opened(self, obj_id: bytes, reader: str) -> None:
        obj = self.objects.get(obj_id)
        if obj is not None:
            obj.readers.add(reader)
            obj.last_used = time.monotonic()

    def closed(self, obj_id: bytes, reader: str) -> list[Segment]:
        obj = self.objects.get(obj_id)
        if obj is None:
            return []
        obj.readers.discard(reader)
        return self._release_if_done(obj)

    def free(self, obj_id: bytes) -> list[Segment]:
        """The owner freed the object. Returns segments to unlink now."""
        obj = self.objects.get(obj_id)
        if obj is None:
            return []
        obj.freed = True
        return self._release_if_done(obj)

    def reader_gone(self, reader: str) -> list[Segment]:
        """A process ended: it reads nothing now, and what it owned is freed."""
        to_unlink: list[Segment] = []
        for obj in list(self.objects.values()):
            if obj.state == WRITING and obj.writer == reader:  # died while writing it
                segment = self.abort(obj.obj_id)
                to_unlink += [segment] if segment is not None else []
                continue
            if obj.owner == reader:
                obj.freed = True
                # A borrower may already know where it is and map it after this: never reuse
                # the segment (unlinked, its memory goes when the last mapping does).
                obj.no_reuse = True
            obj.readers.discard(reader)
            to_unlink += self._release_if_done(obj)
        return to_unlink

    def _release_if_done(self, obj: StoredObject) -> list[Segment]:
        if not obj.freed or obj.readers or obj.state == SPILLING:
            return []
        del self.objects[obj.obj_id]
        if obj.state == SPILLED:
            self.spilled_bytes -= obj.size
            self.dead_spill_files.append(obj.spill_path)
        segment = obj.segment
        if segment is None:
            return []
        if (
            obj.state == WRITING
            or obj.no_reuse
            or segment.name.startswith("w")
            or (self.pooled_bytes() + segment.capacity > self.pool_limit)
        ):
            # Writer-made segments are not pooled: the writer may still map them for writing.
            self.used -= segment.capacity
            return [segment]
        segment.pooled_at = time.monotonic()
        self.pool.append(segment)
        return []

    # -- room -----------------------------------------------------------------------------------

    def pooled_bytes(self) -> int:
        return sum(s.capacity for s in self.pool)

    def pinned_bytes(self) -> int:
        """Bytes that cannot be spilled now: being written, or mapped by a reader."""
        return sum(
            o.segment.capacity
            for o in self.objects.values()
            if o.segment is not None and (o.state in (WRITING, SPILLING) or o.readers)
        )

    def make_room(self, nbytes: int) -> tuple[list[Segment], list[StoredObject]]:
        """What to do so that nbytes more fit: pooled segments to unlink (already taken out of
        the accounts) and objects to spill (marked SPILLING; call spilled() after each).
        Raises StoreFullError if even that is not enough."""
        need = segment_size(nbytes)
        if need > self.capacity:
            raise self.full_error(need)
        if self.used + need <= self.capacity or (
            self.used <= self.capacity and self._has_pooled_fit(nbytes)
        ):
            return [], []
        candidates = sorted(
            (
                o
                for o in self.objects.values()
                if o.state == SEALED and not o.readers and o.segment is not None
            ),
            key=lambda o: o.last_used,
        )
        spillable = sum(o.segment.capacity for o in candidates if o.segment is not None)
        if self.capacity - self.used + self.pooled_bytes() + spillable < need:
            raise self.full_error(need)  # decided before anything is changed
        unlink: list[Segment] = []
        for segment in sorted(self.pool, key=lambda s: s.pooled_at):
            if self.used + need <= self.capacity:
                break
            self.pool.remove(segment)
            self.used -= segment.capacity
            unlink.append(segment)
        spill: list[StoredObject] = []
        room = self.capacity - self.used
        for obj in candidates:
            if room >= need:
                break
            assert obj.segment is not None
            obj.state = SPILLING
            spill.append(obj)
            room += obj.segment.capacity
        return unlink, spill

    def _has_pooled_fit(self, nbytes: int) -> bool:
        return any(nbytes <= s.capacity <= 2 * segment_size(nbytes) for s in self.pool)

    def spilled(self, obj: StoredObject, path: str, ok: bool) -> list[Segment]:
        """A spill finished. Returns the segment to unlink (never pooled: a reader that mapped
        it before the spill may still read it)."""
        if self.objects.get(obj.obj_id) is not obj:  # aborted while it was being spilled
            if ok:
                self.dead_spill_files.append(path)
            return []
        if not ok:
            obj.state = SEALED
            return self._release_if_done(obj)
        obj.state = SPILLED
        obj.spill_path = path
        self.spill_count += 1
        self.spilled_bytes += obj.size
        segment, obj.segment = obj.segment, None
        if segment is not None:
            self.used -= segment.capacity
        gone = self._release_if_done(obj)  # freed while it was being written to disk
        return ([segment] if segment is not None else []) + gone

    def expire_pool(self, older_than: float) -> list[Segment]:
        """Pooled segments unused since older_than (monotonic time) are given back."""
        old = [s for s in self.pool if s.pooled_at < older_than]
        for segment in old:
            self.pool.remove(segment)
            self.used -= segment.capacity
        return old

    def full_error(self, asked: int) -> StoreFullError:
        return StoreFullError(asked, self.capacity, self.pinned_bytes(), self.used)

    # -- inspection -----------------------------------------------------------------------------

    def stats(self) -> dict:
        in_use = sum(o.segment.capacity for o in self.objects.values() if o.segment is not None)
        return {
            "capacity": self.capacity,
            "used": self.used,
            "in_use": in_use,
            "pooled": self.pooled_bytes(),
            "pinned": self.pinned_bytes(),
            "objects": sum(1 for o in self.objects.values() if not o.freed),
            "spilled_objects": sum(1 for o in self.objects.values() if o.state == SPILLED),
            "spilled_bytes": self.spilled_bytes,
            "spill_count": self.spill_count,
        }
