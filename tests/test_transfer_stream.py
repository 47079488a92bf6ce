"""Pulls streamed into the target segment (node/transfer_stream.py), and the chunk path they fall
back to: two object stores in this process, each on a runtime of its own on loopback, so a test
can step in between the source's writes (kill the source mid-stream, stall it) and check what the
puller kept afterwards. One test runs a TLS LocalCluster end to end.

Sizes are taken around the stream's write slice and the chunk size, which the tests shrink so
that the objects stay small.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

import transports
from actorflow._private import errors
from actorflow._private.config import Config
from actorflow._private.node import transfer_stream
from actorflow._private.node.object_store import ObjectStore
from actorflow._private.runtime import Runtime

pytestmark = pytest.mark.timeout(60)

TOKEN = b"stream-test-token-0123456789abcdef"
SLICE = 64 << 10  # the source's write slice, shrunk
CHUNK = 64 << 10  # the smallest chunk Transfers allows
SHARED = 3


def run(coro_fn: Callable[[], Any], loop: str = "uvloop") -> Any:
    """On uvloop (the nodes' loop) unless asked for asyncio's own."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(coro_fn())
    return asyncio.run(coro_fn())


@asynccontextmanager
async def two_stores(**config: Any) -> AsyncIterator[tuple[ObjectStore, ObjectStore]]:
    """(source, puller): object stores on runtimes of their own, on loopback."""
    settings = {"transfer_chunk_bytes": CHUNK, "transfer_stream_min_bytes": 1, **config}
    cfg = Config(**settings)
    made: list[tuple[Runtime, ObjectStore]] = []
    with tempfile.TemporaryDirectory(prefix="af-xfer-") as root:
        try:
            for name in ("source", "puller"):
                runtime = Runtime(asyncio.get_running_loop(), TOKEN, 1 << 30, connect_timeout=5)
                await runtime.start("tcp://127.0.0.1:0")
                store = ObjectStore(
                    runtime,
                    cfg,
                    node_id=f"{name}-node-0000",
                    capacity=256 << 20,
                    spill_dir=os.path.join(root, name, "spill"),
                    socket_path=os.path.join(root, f"{name}.sock"),
                )
                store.start()
                runtime.register_actor("store", store)
                made.append((runtime, store))
            yield made[0][1], made[1][1]
        finally:
            for runtime, store in made:
                store.shutdown()
                await runtime.aclose()


def put(store: ObjectStore, data: bytes) -> list:
    """A sealed object of data in store (no owner); its SHARED wire."""
    obj_id = os.urandom(16)
    segment, fresh = store.state.allocate(obj_id, len(data), "")
    if fresh:
        store.create_segment(segment, "")
    fd = store.open_segment(segment)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    store.state.seal(obj_id)
    wire = [SHARED, store.node_id, store.name_of(segment), obj_id, len(data), []]
    store.set_sealed_wire(obj_id, wire)
    return wire


def contents(store: ObjectStore, wire: list) -> bytes:
    obj = store.state.objects[wire[3]]
    assert obj.segment is not None
    fd = store.open_segment(obj.segment)
    try:
        return os.pread(fd, obj.size, 0)
    finally:
        os.close(fd)


def nothing_kept(puller: ObjectStore, source: ObjectStore, obj_id: bytes) -> None:
    """The failed pull left no object, no segment, no pull in progress; the source's pin and
    mapping are gone."""
    assert obj_id not in puller.state.objects
    assert puller.state.used == 0 and len(puller.segments) == 0
    assert not puller.transfers.targets._maps  # no mapping of the dropped segment kept
    assert puller.transfers.stats()["pulls_in_progress"] == 0
    obj = source.state.objects.get(obj_id)
    assert obj is None or not obj.readers


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


SIZES = [1, 4095, SLICE - 1, SLICE, SLICE + 1, 3 * SLICE + 7, 5 << 20]


@pytest.mark.parametrize(
    ("path", "loop"), [("stream", "uvloop"), ("stream", "asyncio"), ("chunks", "uvloop")]
)
def test_sizes_around_the_slice_and_the_chunk(path, loop, monkeypatch):
    monkeypatch.setattr(transfer_stream, "_SLICE_BYTES", SLICE)
    minimum = 1 if path == "stream" else 1 << 40

    async def main() -> None:
        async with two_stores(transfer_stream_min_bytes=minimum) as (source, puller):
            for size in SIZES:
                data = np.random.default_rng(size).bytes(size)
                wire = put(source, data)
                local = await puller.transfers.pull(wire, source.runtime.address)
                assert local[0] == SHARED and local[1] == puller.node_id and local[3] == wire[3]
                assert contents(puller, local) == data, size
            stats = puller.transfers.stats()
            assert stats["pulls"] == len(SIZES) and stats["pulled_bytes"] == sum(SIZES)
            assert stats["streamed_pulls"] == (len(SIZES) if path == "stream" else 0)
            assert source.transfers.stats()["served_bytes"] == sum(SIZES)
            await until(lambda: not any(o.readers for o in source.state.objects.values()))

    run(main, loop)


def test_a_pooled_segment_is_pulled_into_again_through_its_kept_mapping():
    async def main() -> None:
        async with two_stores(store_pool_idle_seconds=0.2) as (source, puller):
            kept = puller.transfers.targets._maps
            first = put(source, os.urandom(3 << 20))
            local = await puller.transfers.pull(first, source.runtime.address)
            name = local[2]
            assert set(kept) == {name}
            puller.handle_free([[first[3]]], None)  # pooled: the mapping stays
            assert set(kept) == {name} and puller.state.pool
            second_data = os.urandom((3 << 20) - 999)
            second = put(source, second_data)
            again = await puller.transfers.pull(second, source.runtime.address)
            assert again[2] == name and contents(puller, again) == second_data
            puller.handle_free([[second[3]]], None)
            await until(lambda: not puller.state.pool)  # expired: unlinked, and unmapped
            assert not kept and len(puller.segments) == 0

    run(main)


def test_an_empty_object_needs_no_bytes():
    async def main() -> None:
        async with two_stores() as (source, puller):
            wire = put(source, b"")
            local = await puller.transfers.pull(wire, source.runtime.address)
            assert puller.state.objects[local[3]].size == 0
            assert puller.transfers.stats()["streamed_pulls"] == 0
            assert not source.state.objects[wire[3]].readers

    run(main)


def test_concurrent_pulls_of_one_object_share_one_stream(monkeypatch):
    monkeypatch.setattr(transfer_stream, "_SLICE_BYTES", SLICE)

    async def main() -> None:
        async with two_stores() as (source, puller):
            data = os.urandom(2 << 20)
            wire = put(source, data)
            pulls = [puller.transfers.pull(wire, source.runtime.address) for _ in range(4)]
            locals_ = await asyncio.gather(*pulls)
            assert all(local == locals_[0] for local in locals_)
            assert contents(puller, locals_[0]) == data
            assert puller.transfers.stats()["streamed_pulls"] == 1
            assert source.transfers.stats()["served_bytes"] == len(data)

    run(main)


def test_source_dying_mid_stream_fails_the_pull_and_frees_the_target(monkeypatch):
    monkeypatch.setattr(transfer_stream, "_SLICE_BYTES", SLICE)

    async def main() -> None:
        async with two_stores() as (source, puller):
            wire = put(source, os.urandom(4 << 20))
            served = source.transfers.streams._on_sent

            def die_after_first_slice(nbytes: int) -> None:
                served(nbytes)
                source.transfers.streams.close()  # its senders are aborted: the node "died"

            source.transfers.streams._on_sent = die_after_first_slice
            with pytest.raises(errors.ObjectLostError) as lost:
                await puller.transfers.pull(wire, source.runtime.address)
            message = str(lost.value)
            assert wire[3].hex() in message and "stream" in message and "of 4194304" in message
            await until(lambda: not source.state.objects[wire[3]].readers)
            nothing_kept(puller, source, wire[3])

    run(main)


def test_a_stalled_source_times_out_and_frees_the_target(monkeypatch):
    monkeypatch.setattr(transfer_stream._Sender, "start", lambda self, transport: None)

    async def main() -> None:
        async with two_stores(transfer_chunk_timeout_seconds=0.3) as (source, puller):
            wire = put(source, os.urandom(1 << 20))
            with pytest.raises(errors.ObjectLostError, match="sent nothing for 0.3 s"):
                await puller.transfers.pull(wire, source.runtime.address)
            await until(lambda: not source.state.objects[wire[3]].readers)
            nothing_kept(puller, source, wire[3])

    run(main)


def test_no_stream_listener_reachable_falls_back_to_chunks(monkeypatch):
    closed: list[str] = []

    async def closed_port(self: Any) -> str:
        if not closed:
            listener = await transports.listen("tcp://127.0.0.1:0", lambda c: None, token=TOKEN)
            listener.close()
            closed.append(listener.address)  # nothing listens there any more
        return closed[0]

    monkeypatch.setattr(transfer_stream.StreamServer, "address", closed_port)

    async def main() -> None:
        async with two_stores() as (source, puller):
            for _ in range(2):  # the second does not try the stream again
                data = os.urandom(300_000)
                wire = put(source, data)
                local = await puller.transfers.pull(wire, source.runtime.address)
                assert contents(puller, local) == data
            assert puller.transfers.stats()["streamed_pulls"] == 0
            assert len(puller.transfers._unreachable_streams) == 1

    run(main)


def test_a_stream_of_a_transfer_not_begun_is_refused():
    async def main() -> None:
        async with two_stores() as (source, puller):
            wire = put(source, os.urandom(100_000))
            address = await source.transfers.streams.address()
            target = memoryview(bytearray(100_000))
            with pytest.raises(ConnectionError, match=r"closed the stream .*after 0 of 100000"):
                await transfer_stream.receive(puller.runtime, address, wire[3], target, 5)

    run(main)


def test_a_wrong_token_cannot_open_a_stream():
    async def main() -> None:
        async with two_stores() as (source, _):
            address = await source.transfers.streams.address()
            with pytest.raises(transports.AuthenticationError):
                await transports.connect(address, token=b"not the cluster token", timeout=5)

    run(main)


def test_detach_hands_the_stream_over_after_a_frame():
    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.lost = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.data += data

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.set_result(None)

    async def main() -> None:
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()
        listener = await transports.listen("tcp://127.0.0.1:0", accepted.set_result, token=TOKEN)
        try:
            client = await transports.connect(listener.address, token=TOKEN, timeout=5)
            server = await accepted
            client.send(["raw follows"])
            assert await server.recv() == ["raw follows"]
            collect = Collect()
            transport = server.detach(collect)
            assert server.closed
            with pytest.raises(transports.CommClosedError):
                server.send("more")
            client_transport = client.detach(asyncio.Protocol())
            client_transport.write(b"\x00\x01 not a frame")
            client_transport.close()
            await asyncio.wait_for(collect.lost, 5)
            assert bytes(collect.data) == b"\x00\x01 not a frame"
            transport.close()
        finally:
            listener.close()

    run(main)


@pytest.mark.timeout(180)
def test_a_tls_cluster_streams_objects_between_nodes(tmp_path, monkeypatch):
    import actorflow
    from actorflow._private.worker import context
    from actorflow.util.local_cluster import LocalCluster
    from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @actorflow.remote
    def echo(value):
        return value

    root = str(tmp_path / "sessions")
    monkeypatch.setenv("ACTORFLOW_SESSION_ROOT", root)
    if actorflow.is_initialized():
        actorflow.shutdown()
    with LocalCluster(session_root=root, tls=True) as cluster:
        cluster.add_node(num_cpus=1)
        other = cluster.add_node(num_cpus=1)
        actorflow.init(address=cluster.address)
        try:
            payload = np.random.default_rng(7).integers(0, 255, 24 << 20, dtype=np.uint8)
            there = echo.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(other["node_id"], soft=False)
            )
            back = actorflow.get(there.remote(actorflow.put(payload)), timeout=120)
            assert np.array_equal(back, payload)
            core = context.core_or_none()
            assert core is not None
            stats = core.call_control(other["address"], "store", "stats", None)
            assert stats["pulls"] == 1 and stats["streamed_pulls"] == 1
        finally:
            actorflow.shutdown()
