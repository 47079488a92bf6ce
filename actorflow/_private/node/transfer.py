"""Objects across nodes: a node's store pulls an object it lacks from the store that holds it.

A process that meets a SHARED wire of another node asks its own node's store to ``pull`` it,
naming the holding node's store (found in the GCS node table, see ``NodeDirectory``). The store
makes a local segment of the object's size and fetches it from the source store in chunks, with a
bounded window of requests in flight (back-pressure: the source never has more than the window
queued for one transfer), writes them into the segment, seals it, tells the object's owner where
the copy is, and answers the local wire; the process then maps the local copy as any other.
Concurrent pulls of one object share one transfer; a later pull finds the copy already there.

The source pins the object while a transfer reads it (a reader named ``transfer:<puller>``), so
that it is neither spilled nor its segment reused underneath, and unpins it when the puller says it
is done or its connection closes. The copy is counted by the pulling store like any object
(capacity, spilling) and is freed when the owner frees the object (the owner keeps the stores that
hold copies) or when the owner's process is gone (the pulling store watches it).

A pull that fails because the source node is dead, unreachable or no longer has the object raises
``ObjectLostError`` naming the object and the node.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import mmap
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import transports
from actorflow._private import errors
from actorflow._private.config import Config
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.node import transfer_stream
from actorflow._private.node.store_state import (
    SEALED,
    SPILLED,
    SPILLING,
    Segment,
    StoreFullError,
    StoreState,
)
from actorflow._private.protocol import core
from actorflow._private.protocol import store as store_messages
from actorflow._private.runtime import Call, Runtime


class TransferStore(Protocol):
    """What transfers need of their node's object store (object_store.py)."""

    runtime: Runtime
    config: Config
    state: StoreState
    node_id: str
    prefix: str

    def name_of(self, segment: Segment) -> str: ...

    def open_segment(self, segment: Segment) -> int: ...

    def create_segment(self, segment: Segment, what: str) -> None: ...

    def sealed_wire(self, obj_id: bytes) -> list | None: ...

    def set_sealed_wire(self, obj_id: bytes, wire: list) -> None: ...

    def handle_closed(self, payload: list, call: Call | None) -> None: ...

    def handle_free(self, payload: list, call: Call | None) -> None: ...

    def process_gone(self, address: str) -> None: ...

    async def make_room(self, nbytes: int) -> None: ...

    def full_error(self, full: StoreFullError) -> errors.ObjectStoreFullError: ...

    def abort(self, obj_id: bytes) -> None: ...


logger = logging.getLogger(__name__)
_STREAM_RETRY_SECONDS = 60.0  # a stream listener that could not be reached is tried again then
SHARED = 3  # serialization.SHARED (not imported: serialization pulls in cloudpickle)
# Chunk size, window and timeouts are Config's transfer_* fields.
TRANSFER_READER = "transfer:"  # prefix of the reader a transfer pins its object with
_FRAME_SLACK = 4096  # room for the message around a chunk
# glibc serves allocations above a threshold with mmap and gives them back on free, so every
# chunk-sized buffer (read, packed, framed, received, unpacked) is fresh memory whose page faults
# cost 8x the copy itself. A process that transfers keeps them on its heap instead.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_KEEP_BYTES = 128 << 20
_malloc_tuned = False


def keep_chunk_buffers() -> None:
    """Have malloc reuse chunk-sized buffers rather than map fresh pages for each (once per
    process; a no-op where the C library is not glibc)."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum
    mallopt(_M_TRIM_THRESHOLD, _MALLOC_KEEP_BYTES)


class NodeDirectory:
    """node id -> (store address, alive), from the GCS's node table, cached; refreshed when a
    node is not in the cache (one refresh at a time)."""

    def __init__(self, fetch: Callable[[], Awaitable[list]]) -> None:
        self._fetch = fetch
        self._nodes: dict[str, tuple[str, bool]] = {}
        self._refreshing: asyncio.Future | None = None

    async def store_of(self, node_id: str, what: str) -> str:
        """The address of node_id's store; ObjectLostError if the node is dead or unknown
        (what names the object, for the message)."""
        known = self._nodes.get(node_id)
        if known is None or not known[1]:
            await self._refresh()
            known = self._nodes.get(node_id)
        if known is None:
            raise errors.ObjectLostError(
                f"{what} is lost: node {node_id}, which held it, is not part of the cluster"
            )
        address, alive = known
        if not alive:
            raise errors.ObjectLostError(
                f"{what} is lost: node {node_id} ({address}), which held it, is dead"
            )
        return address

    def forget(self, node_id: str) -> None:
        """The node did not answer: ask the GCS again next time."""
        self._nodes.pop(node_id, None)

    async def _refresh(self) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._fetch())
        refreshing = self._refreshing
        try:
            nodes = await asyncio.shield(refreshing)
        except Exception as exc:
            raise errors.ObjectLostError(
                f"the cluster's node table could not be read: {exc}"
            ) from None
        finally:
            if self._refreshing is refreshing:
                self._refreshing = None
        for node in nodes:
            self._nodes[node["node_id"]] = (node["address"], bool(node.get("alive", True)))


def describe(obj_id: bytes, node_id: str) -> str:
    return f"object {obj_id.hex()} (in the store of node {node_id})"


class Transfers:
    """The transfer side of a node's store: serving chunks of what it holds, pulling what it
    lacks."""

    def __init__(self, store: TransferStore) -> None:
        self.store = store
        self.runtime = store.runtime
        self.config = store.config
        self.chunk_bytes = max(
            64 << 10,
            min(self.config.transfer_chunk_bytes, self.runtime.max_frame_size - _FRAME_SLACK),
        )
        # (object, puller) -> the object's segment (or spill file), mapped for the transfer
        self._serving: dict[tuple[bytes, str], mmap.mmap] = {}
        self._pullers: set[str] = set()  # pullers whose connection is watched
        self._pulls: dict[bytes, asyncio.Task] = {}
        self._owners_watched: set[str] = set()
        self._seal_waiters: dict[bytes, list[asyncio.Future]] = {}
        self.pulls = 0
        self.pulled_bytes = 0
        self.served_bytes = 0
        self.streamed_pulls = 0  # pulls whose bytes came over a stream (transfer_stream.py)
        # stream address -> until when not to try it again (it could not be reached: a
        # firewall that drops its packets would cost a connect timeout per pull)
        self._unreachable_streams: dict[str, float] = {}
        self.targets = transfer_stream.TargetMappings()  # where streamed pulls land
        self.streams = transfer_stream.StreamServer(
            self.runtime,
            lambda obj_id, puller: self._serving.get((obj_id, puller)),
            self._count_served,
            self.config.transfer_chunk_timeout_seconds,
        )

    # -- serving --------------------------------------------------------------------------------

    async def begin(self, obj_id: bytes, puller: str, call: Call) -> list:
        """A store starts pulling obj_id from here: pin it, open it; answer [owner, size,
        the address to stream it from ("": in chunks only)]."""
        keep_chunk_buffers()
        stream_address = await self.streams.address()
        state = self.store.state
        obj = state.objects.get(obj_id)
        if obj is None or obj.state not in (SEALED, SPILLING, SPILLED):
            # Its writer's "seal" (or "adopt") may still be on its way: the wire it handed out
            # took another path here.
            waiter = self.runtime.loop.create_future()
            self._seal_waiters.setdefault(obj_id, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, self.config.transfer_seal_wait_seconds)
            except asyncio.TimeoutError:
                pass
            finally:
                waiters = self._seal_waiters.get(obj_id, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._seal_waiters.pop(obj_id, None)
            obj = state.objects.get(obj_id)
        here = describe(obj_id, self.store.node_id)
        if obj is None or obj.state not in (SEALED, SPILLING, SPILLED):
            raise errors.ObjectLostError(f"{here} is lost: that node no longer has it")
        if obj.size == 0:  # nothing to read: nothing to pin
            return [obj.owner, 0, stream_address]
        try:
            if obj.segment is not None:
                fd = self.store.open_segment(obj.segment)
            else:
                fd = os.open(obj.spill_path, os.O_RDONLY)
            try:  # served as views of it: sent straight from shared memory
                mapping = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
        except (OSError, ValueError) as exc:
            raise errors.ObjectLostError(f"{here} is lost: {exc}") from None
        self.streams.stop(obj_id, puller)  # a retried pull's old stream
        self._serving[(obj_id, puller)] = mapping  # the old mapping goes with its views
        state.opened(obj_id, TRANSFER_READER + puller)
        if puller not in self._pullers:
            self._pullers.add(puller)
            call.on_caller_lost(lambda: self._puller_lost(puller))
        return [obj.owner, obj.size, stream_address]

    def sealed(self, obj_id: bytes) -> None:
        """obj_id was sealed or adopted here: wake transfers waiting for it."""
        for waiter in self._seal_waiters.pop(obj_id, []):
            if not waiter.done():
                waiter.set_result(None)

    def read_chunk(self, obj_id: bytes, puller: str, offset: int, length: int) -> memoryview:
        """A view of the chunk: the answer is packed from it at once (the runtime encodes an
        answer when it is sent), and the view is dropped with the message."""
        mapping = self._serving.get((obj_id, puller))
        if mapping is None:
            raise errors.ObjectLostError(
                f"{describe(obj_id, self.store.node_id)}: no transfer of it is open"
            )
        offset = max(0, min(offset, len(mapping)))
        end = min(len(mapping), offset + max(0, min(length, self.chunk_bytes)))
        self._count_served(end - offset)
        return memoryview(mapping)[offset:end]

    def _count_served(self, nbytes: int) -> None:
        self.served_bytes += nbytes

    def end(self, obj_id: bytes, puller: str) -> None:
        # Unmapped once the last view of it goes (never closed under a view still queued).
        self.streams.stop(obj_id, puller)
        if self._serving.pop((obj_id, puller), None) is None:
            return
        self.store.handle_closed([obj_id, TRANSFER_READER + puller], None)

    def _puller_lost(self, puller: str) -> None:
        self._pullers.discard(puller)
        for obj_id, who in [k for k in self._serving if k[1] == puller]:
            self.end(obj_id, who)

    # -- pulling --------------------------------------------------------------------------------

    def local_wire(self, obj_id: bytes) -> list | None:
        obj = self.store.state.objects.get(obj_id)
        if obj is None or obj.state not in (SEALED, SPILLING, SPILLED):
            return None
        return self.store.sealed_wire(obj_id)

    async def pull(self, wire: list, source: str) -> list:
        """The local wire of the object of a SHARED wire held by the store at source."""
        if not (
            isinstance(wire, list)
            and len(wire) == 6
            and wire[0] == SHARED
            and isinstance(wire[3], bytes)
            and isinstance(source, str)
        ):
            raise ValueError("pull takes [a SHARED wire, the source store's address]")
        obj_id = wire[3]
        local = self.local_wire(obj_id)
        if local is not None:
            return local
        task = self._pulls.get(obj_id)
        if task is None:
            keep_chunk_buffers()
            task = self._pulls[obj_id] = self.runtime.loop.create_task(self._pull(wire, source))
            task.add_done_callback(lambda t: self._pull_done(obj_id, t))
        return await asyncio.shield(task)

    def _pull_done(self, obj_id: bytes, task: asyncio.Task) -> None:
        if self._pulls.get(obj_id) is task:
            del self._pulls[obj_id]
        if not task.cancelled():
            task.exception()  # retrieved: the waiters raise it

    async def _pull(self, wire: list, source: str) -> list:
        _, node_id, _name, obj_id, data_len, buffer_lens = wire
        what = describe(obj_id, node_id)
        me = self.runtime.address
        try:
            owner, nbytes, *stream = await asyncio.wait_for(
                self.runtime.ask(source, store_messages.TransferBegin(obj_id, me)),
                self.config.transfer_seal_wait_seconds + self.config.transfer_chunk_timeout_seconds,
            )
        except errors.ObjectLostError:
            raise
        except PeerUnreachableError as exc:
            raise errors.ObjectLostError(
                f"{what} is lost: node {node_id} ({source}) cannot be reached: {exc}"
            ) from None
        except Exception as exc:
            raise errors.ObjectLostError(f"{what} could not be pulled: {exc}") from None
        stream_address = stream[0] if stream and isinstance(stream[0], str) else ""
        try:
            local = await self._receive(wire, owner, nbytes, source, stream_address, what)
        finally:
            if not self.runtime.closed:
                self.runtime.tell(source, store_messages.TransferEnd(obj_id, me))
        await self._tell_owner(obj_id, owner, what)
        return local

    async def _receive(
        self, wire: list, owner: str, nbytes: int, source: str, stream_address: str, what: str
    ) -> list:
        obj_id, data_len, buffer_lens = wire[3], wire[4], wire[5]
        store, state = self.store, self.store.state
        await store.make_room(nbytes)
        try:
            segment, fresh = state.allocate(obj_id, nbytes, owner)
        except StoreFullError as full:
            raise store.full_error(full) from None
        obj = state.objects[obj_id]
        obj.pulled_from = wire[1]
        try:
            if fresh:
                store.create_segment(segment, f" for a copy of {what}")
            fd = store.open_segment(segment)  # our own fd: a free meanwhile drops the store's
        except (OSError, errors.ObjectStoreFullError) as exc:
            store.abort(obj_id)
            if isinstance(exc, errors.ObjectStoreFullError):
                raise
            raise errors.ObjectLostError(f"{what} could not be pulled: {exc}") from None
        try:
            if nbytes >= max(1, self.config.transfer_stream_min_bytes) and stream_address:
                streamed = await self._stream_into(
                    fd, segment, obj_id, nbytes, stream_address, what
                )
            else:
                streamed = False
            if not streamed:
                await self._fetch_into(fd, obj_id, nbytes, source, what)
        except BaseException as exc:
            store.abort(obj_id)
            if isinstance(exc, errors.ObjectLostError) or not isinstance(exc, Exception):
                raise
            raise errors.ObjectLostError(
                f"{what} is lost: pulling it from node {wire[1]} ({source}) failed: {exc}"
            ) from None
        finally:
            os.close(fd)
        if state.objects.get(obj_id) is not obj:
            raise errors.ObjectLostError(f"{what} was freed while it was being pulled")
        state.seal(obj_id)
        local = [SHARED, store.node_id, store.name_of(segment), obj_id, data_len, buffer_lens]
        store.set_sealed_wire(obj_id, local)
        self.pulls += 1
        self.pulled_bytes += nbytes
        return local

    async def _stream_into(
        self, fd: int, segment: Segment, obj_id: bytes, nbytes: int, address: str, what: str
    ) -> bool:
        """Receive the object from the source's stream listener straight into fd's memory;
        False if no stream could be opened (then it goes in chunks)."""
        if self._unreachable_streams.get(address, 0.0) > time.monotonic():
            return False
        try:
            target = self.targets.target(self.store.name_of(segment), fd, segment.capacity, nbytes)
        except (OSError, ValueError) as exc:
            raise errors.ObjectLostError(f"{what} could not be pulled: {exc}") from None
        try:
            await transfer_stream.receive(
                self.runtime,
                address,
                obj_id,
                target,
                self.config.transfer_chunk_timeout_seconds,
            )
        except transports.ConnectError as exc:
            logger.warning("%s: no stream from %s (%s); pulling in chunks", what, address, exc)
            self._unreachable_streams[address] = time.monotonic() + _STREAM_RETRY_SECONDS
            return False
        except ConnectionError as exc:
            raise errors.ObjectLostError(
                f"{what} is lost: its stream from {address} broke: {exc}"
            ) from None
        finally:
            target.release()
        self.streamed_pulls += 1
        return True

    async def _fetch_into(
        self, fd: int, obj_id: bytes, nbytes: int, source: str, what: str
    ) -> None:
        """Fetch [0, nbytes) of the object from source into fd, transfer_window requests at a
        time."""
        me = self.runtime.address
        chunk = self.chunk_bytes
        window = self.config.transfer_window
        timeout = self.config.transfer_chunk_timeout_seconds
        next_offset = 0
        in_flight: dict[asyncio.Future, tuple[int, int]] = {}
        try:
            while next_offset < nbytes or in_flight:
                while next_offset < nbytes and len(in_flight) < window:
                    length = min(chunk, nbytes - next_offset)
                    future = self.runtime.ask(
                        source, store_messages.ReadChunk(obj_id, me, next_offset, length)
                    )
                    in_flight[future] = (next_offset, length)
                    next_offset += length
                done, _ = await asyncio.wait(
                    in_flight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    raise errors.ObjectLostError(
                        f"{what} is lost: its node sent nothing for {timeout:g} s"
                    )
                for future in done:
                    offset, length = in_flight.pop(future)
                    data = future.result()
                    if not isinstance(data, bytes) or len(data) != length:
                        raise errors.ObjectLostError(
                            f"{what}: the source answered a short chunk at offset {offset}"
                        )
                    _pwrite_all(fd, data, offset)  # ~1 ms per chunk: not worth a thread hop
        finally:
            for future in in_flight:
                future.cancel()

    async def _tell_owner(self, obj_id: bytes, owner: str, what: str) -> None:
        """The owner learns where the copy is (it frees it with the object); if the owner no
        longer knows the object, or is gone, the copy is nobody's: free it."""
        if not owner:
            return
        self.watch_owner(owner)
        try:
            known = await self.runtime.ask(owner, core.ObjectCopied(obj_id, self.runtime.address))
        except Exception as exc:
            known, reason = False, f"its owner {owner} is gone ({exc})"
        else:
            reason = f"its owner {owner} freed it"
        if not known:
            self.store.handle_free([[obj_id]], None)
            raise errors.ObjectLostError(f"{what} is lost: {reason}")

    def watch_owner(self, owner: str) -> None:
        """Free what owner owns here once it is gone (our connection to it closes)."""
        if not owner or owner == self.runtime.address or owner in self._owners_watched:
            return
        self._owners_watched.add(owner)
        self.runtime.on_peer_lost(owner, lambda: self._owner_gone(owner))
        future = self.runtime.request(owner, "core", "ping", None)  # opens the connection
        future.add_done_callback(_ignore_failure)

    def _owner_gone(self, owner: str) -> None:
        self._owners_watched.discard(owner)
        self.store.process_gone(owner)

    def close(self) -> None:
        self.streams.close()
        self.targets.close()
        self._serving.clear()
        for task in self._pulls.values():
            task.cancel()

    def stats(self) -> dict[str, Any]:
        return {
            "pulls": self.pulls,
            "pulled_bytes": self.pulled_bytes,
            "served_bytes": self.served_bytes,
            "streamed_pulls": self.streamed_pulls,
            "pulls_in_progress": len(self._pulls),
        }


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)


def _ignore_failure(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
