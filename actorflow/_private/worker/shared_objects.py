"""This process's side of the node's object store: writing large values into shared memory and
reading them back without a copy.

Segments are anonymous memory (node/segments.py): this process maps one through an fd the
node's store hands it over a unix socket (node/segment_socket.py), kept per segment, so mapping
it again is one lookup; the store says when it dropped a segment ("segments_gone"), and the fd
is closed then (it would keep the memory alive).

Writing: the store hands out a segment (often a pooled one whose pages are already faulted in);
this process keeps a few writable mappings of segments it wrote before, so writing into a reused
one runs at memcpy speed. Code on the runtime loop cannot wait for the store, so it makes its own
segment and hands its fd to the store, then tells it ("adopt").

Reading: each object is mapped read-only once per process and values are built on views of that
mapping. The store is told when a mapping is made and when it is closed; a mapping can only be
closed once no value built on it is alive (``mmap.close`` refuses while views exist), so one that
outlives the refs to its object lingers, stays registered, and is retried by a periodic sweep.
Before this process lets an object's owner free it (releasing a borrow, or answering a task that
read it), the store has acknowledged the registration: a segment is never reused under a live view.

Other nodes: a wire whose node is not this process's is first pulled into this node's store
(object_transfer.py), then the local copy is mapped. From a user thread ``load`` waits for the
pull; code on the runtime loop pulls with ``localize`` first (async tasks' arguments, ``await
ref``). As an owner, this process keeps which other stores hold copies of its objects, and frees
them there too (``free_everywhere``).
"""

from __future__ import annotations

import asyncio
import itertools
import mmap
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from actorflow._private import errors, fd_limit, serialization
from actorflow._private.config import Config
from actorflow._private.node import shm
from actorflow._private.node.segment_socket import SegmentClient
from actorflow._private.node.segments import SegmentTable, anonymous_memory
from actorflow._private.node.transfer import NodeDirectory, describe
from actorflow._private.ownership.table import ObjectTable
from actorflow._private.protocol import store
from actorflow._private.runtime import Runtime
from actorflow._private.worker.control_client import ControlClient

SHARED = serialization.SHARED
# How many times a read asks an object's owner for another copy before it gives up (each
# answer is a copy the owner found there, or the value made again).
_RECOVERY_ROUNDS = 3


class _Mapping:
    __slots__ = ("mmap", "registered", "jobs")

    def __init__(self, mapping: mmap.mmap) -> None:
        self.mmap = mapping
        self.registered: asyncio.Future | None = None  # the store's ack of "opened"
        self.jobs = 0  # running tasks that read it as an argument


class SharedObjects:
    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        control: ControlClient,
        objects: ObjectTable,
        *,
        node_id: str,
        raylet_address: str,
        shm_prefix: str,
        spill_dir: str,
        segment_socket: str = "",
        local_segments: SegmentTable | None = None,
    ) -> None:
        self.runtime = runtime
        self.threshold = config.inline_object_max_bytes
        self._sweep_seconds = config.mapping_sweep_seconds
        self._write_mappings_kept = config.write_mappings_kept  # mappings reused for writing
        self._control = control
        self._objects = objects
        self._node_id = node_id
        self._raylet_address = raylet_address
        self._shm_prefix = shm_prefix
        self.spill_dir = spill_dir
        self._lock = threading.Lock()
        self._maps: dict[bytes, _Mapping] = {}
        self._lingering: set[bytes] = set()
        self._sweeping = False
        self._write_maps: OrderedDict[str, tuple[int, mmap.mmap]] = OrderedDict()
        self._write_lock = threading.Lock()
        self._own_names = itertools.count()
        # The store's fds; in the store's own process (init()'s cluster) straight from its table.
        self.segments = SegmentClient(
            segment_socket, runtime.address, local=local_segments, keep=config.segment_fds_kept
        )
        if raylet_address and raylet_address != runtime.address:
            self._watch_store()
        self._copies: dict[bytes, set[str]] = {}  # our objects -> stores holding copies
        # on_lost(wire, owner_hint, cause) -> a wire to try instead (worker/recovery.py)
        self.on_lost: Callable[[list, str, str], Coroutine[Any, Any, list]] | None = None
        self.nodes = NodeDirectory(lambda: self._control.gcs_request("gcs", "get_nodes", None))

    @property
    def store_address(self) -> str:
        return self._raylet_address

    # -- writing --------------------------------------------------------------------------------

    def finish(self, obj_id: bytes, wire: list, owner: str | None = None) -> list:
        """The stored form of a serialized value (serialization.serialize_views): into shared
        memory if it is large, otherwise inline with its buffers copied."""
        if serialization.size_of(wire) <= self.threshold or wire[0] not in (
            serialization.PICKLED,
            serialization.PLAIN,
        ):
            return serialization.inline(wire)
        if wire[0] == serialization.PLAIN:  # a large str or bytes: pickled to be stored
            wire = [serialization.PICKLED, pickle.dumps(wire[1], protocol=5), []]
        return self.write(obj_id, wire[1], wire[2], owner or self.runtime.address)

    def write(self, obj_id: bytes, data: Any, buffers: list, owner: str) -> list:
        buffer_lens = [memoryview(b).nbytes for b in buffers]
        data_len = memoryview(data).nbytes
        offsets, nbytes = shm.layout(data_len, buffer_lens)
        if self._control.on_loop_thread():
            return self._write_own_segment(
                obj_id, data, buffers, offsets, nbytes, owner, data_len, buffer_lens
            )
        answer = self._control.call_control(
            self.store_address,
            "store",
            "create",
            store.Create(obj_id, nbytes, owner, self.runtime.address),
            timeout=None,
        )
        if answer[0] == "exists":
            return answer[1]
        name, capacity, fresh = answer
        wire = [SHARED, self._node_id, name, obj_id, data_len, buffer_lens]
        try:
            self._fill(name, capacity, fresh, obj_id, data, buffers, offsets)
        except BaseException:
            self.runtime.call_soon(self.runtime.tell, self.store_address, store.Abort(obj_id))
            raise
        self.runtime.call_soon(self.runtime.tell, self.store_address, store.Seal(obj_id, wire))
        return wire

    def _fill(
        self,
        name: str,
        capacity: int,
        fresh: bool,
        obj_id: bytes,
        data: Any,
        buffers: list,
        offsets: list[int],
    ) -> None:
        if fresh:  # pwrite into new pages is twice as fast as faulting them in through a map
            fd = self._open_segment(name, obj_id)
            try:
                shm.write_parts(fd, obj_id, data, buffers, offsets)
            finally:
                os.close(fd)
            return
        with self._write_lock:
            mapping = self._writable(name, capacity, obj_id)
            shm.write_parts(mapping, obj_id, data, buffers, offsets)

    def _open_segment(self, name: str, obj_id: bytes) -> int:
        fd = self.segments.open(name)
        if fd is None:
            raise errors.ObjectLostError(
                f"object {obj_id.hex()}: its segment {name} was dropped before it was written"
            )
        return fd

    def _writable(self, name: str, capacity: int, obj_id: bytes) -> mmap.mmap:
        """A writable mapping of a pooled segment, kept for the next write into it."""
        kept = self._write_maps.get(name)
        if kept is not None and kept[0] == capacity:
            self._write_maps.move_to_end(name)
            return kept[1]
        while len(self._write_maps) >= self._write_mappings_kept:
            self._write_maps.popitem(last=False)[1][1].close()
        fd = self._open_segment(name, obj_id)
        try:
            mapping = mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        finally:
            os.close(fd)
        self._write_maps[name] = (capacity, mapping)
        return mapping

    def _watch_store(self) -> None:
        """If our node's store goes (its process killed), let go of every fd and writable
        mapping of its segments: they would keep its memory alive as long as we live."""
        self.runtime.on_peer_lost(self.store_address, self._store_lost)

    def _store_lost(self) -> None:
        self.segments.forget(None)
        self.segments_gone(None)
        if not self.runtime.closed:
            self._watch_store()  # a store reached again later may be lost again

    def segments_gone(self, names: list[str] | None) -> None:
        """The store dropped these segments (None: all of them): close our fds and writable
        mappings of them, which would keep their memory alive (loop thread). A write in
        progress (into another segment) is not waited for: retried shortly."""
        self.segments.forget(names)
        if not self._write_lock.acquire(blocking=False):
            self.runtime.loop.call_later(0.05, self.segments_gone, names)
            return
        try:
            for name in list(self._write_maps) if names is None else names:
                kept = self._write_maps.pop(name, None)
                if kept is not None:
                    kept[1].close()
        finally:
            self._write_lock.release()

    def _write_own_segment(
        self,
        obj_id: bytes,
        data: Any,
        buffers: list,
        offsets: list[int],
        nbytes: int,
        owner: str,
        data_len: int,
        buffer_lens: list,
    ) -> list:
        # Unique: a retried task's result may be written again, by this process or another.
        name = f"{self._prefix()}w{obj_id.hex()}-{os.getpid()}-{next(self._own_names)}"
        try:
            fd = anonymous_memory(name, nbytes)
        except OSError as exc:
            raise errors.ObjectStoreFullError(
                f"could not create a {nbytes}-byte shared-memory segment: {exc}"
            ) from None
        try:
            shm.write_parts(fd, obj_id, data, buffers, offsets)
            self.segments.give(name, fd)  # before "adopt", and before anyone sees the wire
        finally:
            os.close(fd)
        wire = [SHARED, self._node_id, name, obj_id, data_len, buffer_lens]
        self.runtime.tell(self.store_address, store.Adopt(obj_id, nbytes, owner, name, wire))
        return wire

    def _prefix(self) -> str:
        if not self._shm_prefix:
            raise errors.ActorflowError("this process does not know its node's object store")
        return self._shm_prefix

    # -- reading --------------------------------------------------------------------------------

    def load(self, wire: list, job: bool = False, owner: str = "") -> Any:
        """The value of a SHARED wire, built on views of this process's mapping of it (an
        object of another node is pulled here first; owner: who to ask if it is lost)."""
        rounds = 0
        while True:
            if wire[1] != self._node_id and wire[3] not in self._maps:
                wire = self._localize_blocking(wire, owner)
            try:
                views = self._views(wire, job)
            except errors.ObjectLostError as lost:  # this node's store lost it (it died)
                rounds += 1
                if rounds > _RECOVERY_ROUNDS or self.on_lost is None:
                    raise
                wire = self._recover_blocking(wire, owner, str(lost))
                continue
            if views is not None:
                break  # else it was mapped, and unmapped since: pull it again
        data, buffers = views
        try:
            return pickle.loads(data, buffers=buffers)
        finally:
            data.release()

    def _views(self, wire: list, job: bool) -> tuple[memoryview, list] | None:
        _, node, name, obj_id, data_len, buffer_lens = wire
        with self._lock:
            entry = self._maps.get(obj_id)
            if entry is None:
                if node != self._node_id:
                    return None
                try:
                    mapping = self._map(name, obj_id)
                except errors.ObjectLostError:
                    raise
                except errors.ActorflowError as exc:  # this node's store is gone, and it too
                    raise errors.ObjectLostError(
                        f"object {obj_id.hex()} cannot be read here: {exc}"
                    ) from None
                if mapping is None:
                    raise errors.ObjectLostError(
                        f"object {obj_id.hex()} is no longer in the object store (it was freed)"
                    )
                entry = self._maps[obj_id] = _Mapping(mapping)
                self.runtime.call_soon(self._register, obj_id, entry)
                if not job and not self._objects.is_known(obj_id):
                    self.runtime.call_soon(self._linger, obj_id)  # no table entry will free it
            if job:
                entry.jobs += 1
            return shm.views(entry.mmap, data_len, buffer_lens)

    def _map(self, name: str, obj_id: bytes) -> mmap.mmap | None:
        """obj_id mapped read-only: from its segment, else from its spill file; None if
        neither holds it."""
        try:
            fd = self.segments.open(name)
            if fd is not None:
                try:
                    mapping = shm.map_fd(fd, obj_id)
                finally:
                    os.close(fd)
                if mapping is not None:
                    return mapping
            return shm.map_file(os.path.join(self.spill_dir, obj_id.hex()), obj_id)
        except OSError as exc:
            if not fd_limit.is_out_of_fds(exc):
                raise
            raise OSError(
                exc.errno,
                f"cannot map object {obj_id.hex()}: this process has too many open files "
                f"(limit {fd_limit.open_file_limit()}); before Python 3.13 every object held "
                "mapped keeps an fd open: raise the limit (ulimit -n) or hold fewer at once",
            ) from exc

    # -- other nodes ----------------------------------------------------------------------------

    def is_remote(self, wire: Any) -> bool:
        return (
            isinstance(wire, list)
            and len(wire) == 6
            and wire[0] == SHARED
            and wire[1] != self._node_id
        )

    async def localize(self, wire: list, owner: str = "") -> list:
        """The wire of a copy of wire's object in this node's store, pulled there if need be
        (loop thread). If the node that held it is gone or lost it, its owner (found in the
        table, else owner) is asked for another copy or to make it again (on_lost); the error
        it answers is raised (an ObjectLostError)."""
        if not self.is_remote(wire):
            return wire
        for _round in range(_RECOVERY_ROUNDS):
            try:
                return await self._pull(wire)
            except errors.ObjectLostError as lost:
                if self.on_lost is None or self.runtime.closed:
                    raise
                wire = await self.on_lost(wire, owner, str(lost))
            if serialization.is_error(wire):
                raise serialization.deserialize(wire)
            if not self.is_remote(wire):
                return wire
        return await self._pull(wire)

    async def _pull(self, wire: list) -> list:
        node_id = wire[1]
        source = await self.nodes.store_of(node_id, describe(wire[3], node_id))
        try:
            return list(await self.runtime.ask(self.store_address, store.Pull(wire, source)))
        except errors.ObjectLostError:
            self.nodes.forget(node_id)  # it may have died: ask the GCS next time
            raise

    async def localize_any_loop(self, wire: list) -> list:
        """localize, awaited from any event loop."""
        if asyncio.get_running_loop() is self.runtime.loop:
            return await self.localize(wire)
        future = asyncio.run_coroutine_threadsafe(self.localize(wire), self.runtime.loop)
        return await asyncio.wrap_future(future)

    def _localize_blocking(self, wire: list, owner: str = "") -> list:
        if self._control.on_loop_thread():
            raise errors.ActorflowError(
                f"object {wire[3].hex()} is on another node and must be pulled before it is "
                f"read on actorflow's event loop: await the ref instead"
            )
        future = asyncio.run_coroutine_threadsafe(self.localize(wire, owner), self.runtime.loop)
        return future.result()

    def _recover_blocking(self, wire: list, owner: str, cause: str) -> list:
        if self._control.on_loop_thread() or self.on_lost is None:
            raise errors.ObjectLostError(cause)
        future = asyncio.run_coroutine_threadsafe(
            self.on_lost(wire, owner, cause), self.runtime.loop
        )
        wire = future.result()
        if serialization.is_error(wire):
            raise serialization.deserialize(wire)
        return wire

    def prefetch(self, wires: list) -> None:
        """Start pulling the objects of wires that are on other nodes (any thread); a load
        that follows joins the transfer."""
        remote = [w for w in wires if self.is_remote(w)]
        if remote:
            self.runtime.call_soon(self._prefetch, remote)

    def _prefetch(self, wires: list) -> None:
        for wire in wires:
            self.runtime.loop.create_task(self.localize(wire)).add_done_callback(_ignore_failure)

    def copied(self, obj_id: bytes, store: str) -> bool:
        """A store made a copy of an object we own (loop thread): False if we no longer know
        the object (the store frees its copy then)."""
        if not self._objects.is_known(obj_id):
            return False
        self._copies.setdefault(obj_id, set()).add(store)
        return True

    def copies_of(self, obj_id: bytes) -> list[str]:
        """The stores other than the primary one known to hold a copy of our object."""
        return sorted(self._copies.get(obj_id, ()))

    def forget_copy(self, obj_id: bytes, store: str) -> None:
        """That store no longer holds a copy (or its copy became the primary one)."""
        copies = self._copies.get(obj_id)
        if copies is not None:
            copies.discard(store)
            if not copies:
                del self._copies[obj_id]

    def free_everywhere(self, obj_id: bytes, wire: list) -> None:
        """Our object is nobody's: free it in the store that made it and in every store that
        holds a copy (loop thread)."""
        stores = self._copies.pop(obj_id, set())
        if wire[1] == self._node_id:
            stores.discard(self.store_address)
            # After this process's own "opened"/"closed" on the same connection: in order.
            self.runtime.tell(self.store_address, store.Free([obj_id]))
        else:
            self.runtime.loop.create_task(self._free_at_node(obj_id, wire[1])).add_done_callback(
                _ignore_failure
            )
        for address in stores:
            self.runtime.tell(address, store.Free([obj_id]))

    async def _free_at_node(self, obj_id: bytes, node_id: str) -> None:
        try:
            address = await self.nodes.store_of(node_id, describe(obj_id, node_id))
        except errors.ObjectLostError:
            return  # the node is gone, and the object with it
        if not self.runtime.closed:
            self.runtime.tell(address, store.Free([obj_id]))

    def copy_count(self) -> int:
        return sum(len(s) for s in self._copies.values())

    def _register(self, obj_id: bytes, entry: _Mapping) -> None:
        entry.registered = self.runtime.ask(
            self.store_address, store.Opened(obj_id, self.runtime.address)
        )
        entry.registered.add_done_callback(_ignore_failure)

    def release(self, obj_id: bytes, job: bool = False) -> None:
        """This process may no longer need its mapping of obj_id (its table entry went, or a task
        that read it ended): close it unless values built on it are alive (loop thread)."""
        with self._lock:
            entry = self._maps.get(obj_id)
            if entry is None:
                return
            if job:
                entry.jobs -= 1
            if entry.jobs > 0 or self._objects.is_known(obj_id):
                return
            if not self._close(obj_id, entry):  # a value read from it is still alive
                self._lingering.add(obj_id)
                self._start_sweep()
                return
        self._tell_closed(obj_id, entry)

    def release_idle(self) -> list[bytes]:
        """Close every mapping no value is built on any more, even of objects this process
        still holds refs to (the store is short of room and cannot spill what is mapped); the
        next read maps again. Returns the ids let go of (loop thread)."""
        released = []
        with self._lock:
            for obj_id, entry in list(self._maps.items()):
                if entry.jobs == 0 and self._close(obj_id, entry):
                    released.append((obj_id, entry))
        for obj_id, entry in released:
            self._tell_closed(obj_id, entry)
        return [obj_id for obj_id, _ in released]

    def _close(self, obj_id: bytes, entry: _Mapping) -> bool:
        """Unmap obj_id unless values built on it are alive (call with self._lock held)."""
        try:
            entry.mmap.close()
        except BufferError:
            return False
        del self._maps[obj_id]
        self._lingering.discard(obj_id)
        return True

    def _tell_closed(self, obj_id: bytes, entry: _Mapping) -> None:
        """The store may reuse the segment once it hears this (after our "opened")."""
        self._after_registered(
            entry,
            lambda: self.runtime.tell(
                self.store_address, store.Closed(obj_id, self.runtime.address)
            ),
        )

    def settled(self, obj_ids: list[bytes]) -> asyncio.Future | None:
        """A future that is done once the store has acknowledged this process's registration
        of each of obj_ids (None if it already has)."""
        waiting = []
        for obj_id in obj_ids:
            entry = self._maps.get(obj_id)
            if entry is not None and entry.registered is not None and not entry.registered.done():
                waiting.append(entry.registered)
        if not waiting:
            return None
        return asyncio.ensure_future(asyncio.wait(waiting))

    def _after_registered(self, entry: _Mapping, then: Any) -> None:
        if entry.registered is None or entry.registered.done():
            then()
        else:
            entry.registered.add_done_callback(lambda _f: then())

    def _linger(self, obj_id: bytes) -> None:
        self._lingering.add(obj_id)
        self._start_sweep()

    def _start_sweep(self) -> None:
        if not self._sweeping:
            self._sweeping = True
            self.runtime.loop.call_later(self._sweep_seconds, self._sweep)

    def _sweep(self) -> None:
        self._sweeping = False
        for obj_id in list(self._lingering):
            self._lingering.discard(obj_id)
            self.release(obj_id)
        if self._lingering:
            self._start_sweep()

    def mapped_count(self) -> int:
        return len(self._maps)

    def close(self) -> None:
        with self._write_lock:
            for _capacity, mapping in self._write_maps.values():
                mapping.close()
            self._write_maps.clear()
        self.segments.close()


def shared_ids(wires: list) -> list[bytes]:
    """The ids of the objects among wires that live in shared memory."""
    return [w[3] for w in wires if isinstance(w, list) and w and w[0] == SHARED]


def _ignore_failure(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
