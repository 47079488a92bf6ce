"""The node's object store: the ``store`` actor, hosted next to the raylet.

It hands out shared-memory segments to writers, learns which processes map which objects, frees
objects when their owners say so, spills to disk when full, and answers inspection queries. The
bytes never pass through it: writers and readers map the segments themselves (shm.py), with fds
the store's socket hands them (segments.py, segment_socket.py), and the accounting lives in
store_state.py. Objects of other nodes are pulled into it in chunks, and it serves chunks of its
own to other nodes' stores (transfer.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from typing import Any

from actorflow._private import errors
from actorflow._private.config import Config
from actorflow._private.node import segments, shm
from actorflow._private.node.segment_socket import SegmentServer
from actorflow._private.node.store_state import (
    SEALED,
    WRITING,
    Segment,
    StoredObject,
    StoreFullError,
    StoreState,
)
from actorflow._private.node.transfer import TRANSFER_READER, Transfers
from actorflow._private.protocol import core, store
from actorflow._private.protocol.message import decode
from actorflow._private.runtime import Call, Runtime

logger = logging.getLogger("actorflow.store")

# How long a segment a writer handed in stays without its "adopt" once the writer is gone (the
# message may still be on its way).
_GIVEN_GRACE_SECONDS = 10.0


def default_capacity() -> int:
    """30% of RAM, as in Ray; where segments must be files in /dev/shm (no memfd), never more
    than 90% of what it can hold."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 8 << 30
    capacity = int(ram * 0.3)
    if segments.memfd_available():
        return capacity
    try:
        st = os.statvfs(shm.SHM_ROOT)
        capacity = min(capacity, int(st.f_blocks * st.f_frsize * 0.9))
    except OSError:
        pass
    return capacity


class ObjectStore:
    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        *,
        node_id: str,
        capacity: int,
        spill_dir: str,
        socket_path: str,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.node_id = node_id
        self.state = StoreState(capacity)
        self.prefix = shm.segment_prefix(node_id[:8])
        self.spill_dir = spill_dir
        self.segments = segments.SegmentTable()
        self.server = SegmentServer(self.segments, socket_path)
        self._room = asyncio.Lock()
        self._sealed_wires: dict[bytes, list] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.transfers = Transfers(self)

    def start(self) -> None:
        removed = shm.remove_stale_segments(os.getpid())
        if removed:
            logger.info("removed %d shared-memory files left by an older version", removed)
        os.makedirs(self.spill_dir, mode=0o700, exist_ok=True)
        self.server.start()
        self._schedule_expiry()

    def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transfers.close()
        self.server.close()
        self.segments.close()  # the memory goes once the last process mapping it lets go
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    @property
    def socket_path(self) -> str:
        return self.server.path

    def name_of(self, segment: Segment) -> str:
        """The segment's name in wires and in the segment table."""
        return self.prefix + segment.name

    def open_segment(self, segment: Segment) -> int:
        """A new fd of the segment, for the caller to close (OSError if it is gone)."""
        fd = self.segments.open(self.name_of(segment))
        if fd is None:
            raise FileNotFoundError(f"segment {self.name_of(segment)} is gone")
        return fd

    def create_segment(self, segment: Segment, what: str) -> None:
        """The memory of a fresh segment; ObjectStoreFullError if the kernel refuses it."""
        try:
            self.segments.create(self.name_of(segment), segment.capacity)
        except OSError as exc:
            raise errors.ObjectStoreFullError(
                f"could not create a {segment.capacity}-byte shared-memory segment{what}: {exc}"
            ) from None

    # -- writers --------------------------------------------------------------------------------

    async def handle_create(self, payload: list, call: Call) -> list:
        """Room for a value (protocol.store.Create: what it answers)."""
        obj_id, nbytes, owner, writer = decode(store.Create, payload)
        if owner != writer:  # a task's result, for a caller that may be on another node
            self.transfers.watch_owner(owner)
        existing = self.state.objects.get(obj_id)
        if existing is not None:
            if existing.state != WRITING and obj_id in self._sealed_wires:
                return ["exists", self._sealed_wires[obj_id]]
            self.abort(obj_id)
        await self.make_room(nbytes)
        try:
            segment, fresh = self.state.allocate(obj_id, nbytes, owner, writer)
        except StoreFullError as full:
            raise self.full_error(full) from None
        if fresh:
            try:
                self.create_segment(segment, "")
            except errors.ObjectStoreFullError:
                self.state.abort(obj_id)
                raise
        return [self.name_of(segment), segment.capacity, fresh]

    def handle_seal(self, payload: list, call: Call | None) -> None:
        obj_id, wire = decode(store.Seal, payload)
        if obj_id in self.state.objects:
            self.state.seal(obj_id)
            self._sealed_wires[obj_id] = wire
            self.transfers.sealed(obj_id)

    def handle_abort(self, payload: list, call: Call | None) -> None:
        obj_id = decode(store.Abort, payload).obj_id
        self.abort(obj_id)
        self._sealed_wires.pop(obj_id, None)

    def handle_adopt(self, payload: list, call: Call | None) -> None:
        """A segment a writer made itself."""
        obj_id, nbytes, owner, name, wire = decode(store.Adopt, payload)
        if obj_id in self.state.objects:
            self.abort(obj_id)
        if not self.segments.adopted(name):
            logger.warning("object %s: its writer's segment %s never arrived", obj_id.hex(), name)
            return
        self.state.adopt(obj_id, nbytes, owner, name[len(self.prefix) :])
        self._sealed_wires[obj_id] = wire
        self.transfers.watch_owner(owner)
        self.transfers.sealed(obj_id)
        if self.state.used > self.state.capacity:
            self.runtime.loop.create_task(self._shed_overflow())

    async def _shed_overflow(self) -> None:
        try:
            await self.make_room(0)
        except errors.ObjectStoreFullError as exc:
            logger.warning("the object store is over capacity and nothing can be spilled: %s", exc)

    def sealed_wire(self, obj_id: bytes) -> list | None:
        return self._sealed_wires.get(obj_id)

    def set_sealed_wire(self, obj_id: bytes, wire: list) -> None:
        self._sealed_wires[obj_id] = wire

    # -- other nodes: pulling what this node lacks, serving what it has ------------------------

    async def handle_pull(self, payload: list, call: Call) -> list:
        """The wire of a copy in this store of another node's object (made once; concurrent
        pulls share the transfer)."""
        wire, source = decode(store.Pull, payload)
        return await self.transfers.pull(wire, source)

    def handle_locate(self, payload: list, call: Call) -> list | None:
        """This store's wire of the object, if it holds it (an owner looking for a copy)."""
        return self.transfers.local_wire(decode(store.Locate, payload).obj_id)

    async def handle_transfer_begin(self, payload: list, call: Call) -> list:
        """[owner, size] of an object another store pulls; it is pinned meanwhile."""
        obj_id, puller = decode(store.TransferBegin, payload)
        return await self.transfers.begin(obj_id, puller, call)

    def handle_read_chunk(self, payload: list, call: Call) -> memoryview | bytes:
        """The bytes of the object's segment from offset."""
        obj_id, puller, offset, length = decode(store.ReadChunk, payload)
        chunk = self.transfers.read_chunk(obj_id, puller, offset, length)
        return chunk if call.conn is not None else bytes(chunk)  # a view must not outlive it

    def handle_transfer_end(self, payload: list, call: Call | None) -> None:
        obj_id, puller = decode(store.TransferEnd, payload)
        self.transfers.end(obj_id, puller)

    # -- readers and owners ---------------------------------------------------------------------

    def handle_opened(self, payload: list, call: Call) -> None:
        """The reader has mapped the object (acknowledged, so that the reader can be sure the
        store knows before it lets the owner free the object)."""
        obj_id, reader = decode(store.Opened, payload)
        self.state.opened(obj_id, reader)

    def handle_closed(self, payload: list, call: Call | None) -> None:
        obj_id, reader = decode(store.Closed, payload)
        self._unlink_segments(self.state.closed(obj_id, reader))
        self._drop_wires()

    def handle_free(self, payload: list, call: Call | None) -> None:
        for obj_id in decode(store.Free, payload).obj_ids:
            self._unlink_segments(self.state.free(obj_id))
        self._drop_wires()

    def process_gone(self, address: str) -> None:
        """A worker on this node ended (called by the raylet), or an owner elsewhere."""
        self._unlink_segments(self.state.reader_gone(address))
        self._drop_wires()
        given = self.segments.holder_gone(address)
        if given:  # handed in, and its "adopt" not here (yet): give it a moment
            self.runtime.loop.call_later(_GIVEN_GRACE_SECONDS, self._drop_unadopted, given)

    def _drop_unadopted(self, names: list[str]) -> None:
        adopted = {self.name_of(o.segment) for o in self.state.objects.values() if o.segment}
        self._tell_holders(self.segments.drop([n for n in names if n not in adopted]))

    def _drop_wires(self) -> None:
        for path in self.state.dead_spill_files:
            _unlink(path)
        self.state.dead_spill_files.clear()
        if len(self._sealed_wires) > len(self.state.objects):
            for obj_id in [k for k in self._sealed_wires if k not in self.state.objects]:
                del self._sealed_wires[obj_id]

    # -- room -----------------------------------------------------------------------------------

    async def make_room(self, nbytes: int) -> None:
        if self.state.used + nbytes <= self.state.capacity and not self.state.pool:
            return
        async with self._room:
            try:
                unlink, spill = self.state.make_room(nbytes)
            except StoreFullError as full:
                if not await self._ask_readers_to_let_go():
                    raise self.full_error(full) from None
                try:
                    unlink, spill = self.state.make_room(nbytes)
                except StoreFullError as still_full:
                    raise self.full_error(still_full) from None
            self._unlink_segments(unlink)
            for obj in spill:
                await self._spill(obj)

    async def _ask_readers_to_let_go(self) -> bool:
        """Processes keep mapping objects they hold refs to; ask them to close the mappings no
        value is built on, so that those objects can be spilled. True if any did."""
        readers = {
            r
            for o in self.state.objects.values()
            for r in o.readers
            if not r.startswith(TRANSFER_READER)
        }
        if not readers:
            return False
        asks = {r: self.runtime.request(r, "core", "release_mappings", None) for r in readers}
        await asyncio.wait(asks.values(), timeout=self.config.store_readers_timeout)
        released = False
        for reader, future in asks.items():
            if not future.done() or future.cancelled() or future.exception() is not None:
                continue
            for obj_id in future.result():
                # Also sent as "closed" by the reader; applying it twice is harmless.
                self._unlink_segments(self.state.closed(obj_id, reader))
                released = True
        self._drop_wires()
        return released

    async def _spill(self, obj: StoredObject) -> None:
        assert obj.segment is not None
        target = os.path.join(self.spill_dir, obj.obj_id.hex())
        try:
            source = self.open_segment(obj.segment)
            try:
                await asyncio.to_thread(_copy_segment, source, obj.segment.capacity, target)
            finally:
                os.close(source)
            ok = True
        except OSError as exc:
            logger.warning("could not spill object %s to %s: %s", obj.obj_id.hex(), target, exc)
            ok = False
        self._unlink_segments(self.state.spilled(obj, target, ok))
        self._drop_wires()

    def full_error(self, full: StoreFullError) -> errors.ObjectStoreFullError:
        return errors.ObjectStoreFullError(
            f"the object store of node {self.node_id[:8]} is full: asked for {full.asked} bytes, "
            f"capacity {full.capacity} bytes, of which {full.pinned} bytes are pinned (being "
            f"written or mapped by a reader) and cannot be spilled; free some objects (drop "
            f"their refs) or raise object_store_memory"
        )

    def abort(self, obj_id: bytes) -> None:
        """Forget an object whose write failed or is being replaced, and unlink its segment."""
        segment = self.state.abort(obj_id)
        if segment is not None:
            self._unlink_segments([segment])

    def _unlink_segments(self, dropped: list[Segment]) -> None:
        if dropped:
            names = [self.name_of(s) for s in dropped]
            self.transfers.targets.dropped(names)  # pulls' mappings of them
            self._tell_holders(self.segments.drop(names))

    def _tell_holders(self, holders: dict[str, list[str]]) -> None:
        """Processes handed fds of dropped segments close theirs (the memory goes then)."""
        if self.runtime.closed:
            return
        for holder, names in holders.items():
            self.runtime.tell(holder, core.SegmentsGone(names))

    def _schedule_expiry(self) -> None:
        idle = self.config.store_pool_idle_seconds
        self._timer = self.runtime.loop.call_later(idle, self._expire_pool)

    def _expire_pool(self) -> None:
        idle = self.config.store_pool_idle_seconds
        self._unlink_segments(self.state.expire_pool(time.monotonic() - idle))
        self._schedule_expiry()

    # -- inspection -----------------------------------------------------------------------------

    def handle_stats(self, payload: Any, call: Call) -> dict:
        return {**self.state.stats(), **self.transfers.stats()}

    def primary_count(self) -> int:
        """Objects whose primary copy lives here (not a copy pulled from another node, not
        freed by their owner): the node must stay while they do."""
        return sum(1 for o in self.state.objects.values() if not o.pulled_from and not o.freed)

    def handle_list_objects(self, payload: Any, call: Call) -> list:
        return [
            {
                "object_id": o.obj_id.hex(),
                "size": o.size,
                "owner": o.owner,
                "where": "spilled" if o.spill_path else "shared",
                "state": o.state,
                "readers": len(o.readers),
                "freed": o.freed,
                "pulled_from": o.pulled_from,
            }
            for o in self.state.objects.values()
        ]


def _copy_segment(source: int, size: int, target: str) -> None:
    partial = target + ".partial"
    out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        offset = 0
        while offset < size:  # in the kernel, no copy through Python
            sent = os.sendfile(out, source, offset, min(size - offset, 1 << 30))
            if sent == 0:
                break
            offset += sent
    finally:
        os.close(out)
    os.replace(partial, target)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["ObjectStore", "default_capacity", "SEALED"]
