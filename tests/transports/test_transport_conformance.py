"""Behaviour every backend (tcp, unix, inproc) must share."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from typing import Any

import pytest
from tx_helpers import TOKEN, Collector, Server, round_trip, wait_for, wait_until

import transports
from transports import (
    AuthenticationError,
    CommClosedError,
    ConnectError,
    FrameError,
    FrameTooLargeError,
)

pytestmark = pytest.mark.timeout(30)


async def test_round_trip_preserves_types(server: Server) -> None:
    msg: dict[Any, Any] = {
        "a": (1, 2.5, None, True),
        b"raw": b"\x00\xff",
        7: "seven",
        "nested": [{"x": []}],
    }
    echoed = await round_trip(server.address, msg)
    # msgpack semantics on every backend: tuples become lists, bytes/str/int keys survive.
    assert echoed == {
        "a": [1, 2.5, None, True],
        b"raw": b"\x00\xff",
        7: "seven",
        "nested": [{"x": []}],
    }
    assert type(echoed[b"raw"]) is bytes


async def test_addresses(server: Server, scheme: str) -> None:
    assert server.address.startswith(f"{scheme}://")
    if scheme == "tcp":
        assert not server.address.endswith(":0")
    async with await transports.connect(server.address, token=TOKEN) as conn:
        sconn = await server.next_conn()
        assert conn.peer_address == server.address
        assert sconn.local_address == server.address
        assert sconn.peer_address == conn.local_address or scheme == "unix"
        assert not conn.closed


async def test_request_response_in_order(server: Server) -> None:
    async with await transports.connect(server.address, token=TOKEN) as conn:
        for i in range(500):
            conn.send(["req", i])
            assert await wait_for(conn.recv()) == ["req", i]


async def test_pipelined_10k_in_order(server: Server) -> None:
    n = 10_000
    conn = await transports.connect(server.address, token=TOKEN)
    sink = Collector(expect=n).attach(conn)
    for i in range(n):
        conn.send(i)
    assert await wait_for(sink.done) == list(range(n))
    await conn.aclose()


async def test_large_frame_round_trip(server: Server) -> None:
    blob = os.urandom(20 * 1024 * 1024)
    async with await transports.connect(server.address, token=TOKEN) as conn:
        conn.send({"blob": blob, "after": 1})
        conn.send("small follower")
        await conn.drain()
        got = await wait_for(conn.recv(), 20)
        assert got["blob"] == blob and got["after"] == 1
        assert await wait_for(conn.recv()) == "small follower"


async def test_large_frames_sent_alone_round_trip(server: Server) -> None:
    """One large frame per flush is written as header + body, not joined: still exact."""
    blobs = [os.urandom(3 * 1024 * 1024 + i) for i in range(3)]
    async with await transports.connect(server.address, token=TOKEN) as conn:
        for blob in blobs:
            conn.send(blob)
            await conn.drain()  # flushes this frame on its own
        for blob in blobs:
            assert await wait_for(conn.recv(), 20) == blob


async def test_frame_over_limit_closes_only_that_connection(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    srv = await Server().start(address, max_frame_size=1024)
    try:
        bystander = await transports.connect(srv.address, token=TOKEN)
        conn = await transports.connect(srv.address, token=TOKEN)  # default (bigger) limit
        sink = Collector().attach(conn)
        await srv.next_conn()
        victim = await srv.next_conn()
        with caplog.at_level(logging.WARNING, logger="transports"):
            conn.send(b"x" * 2000)
            closed_conn, exc = await srv.next_close()
        assert closed_conn is victim
        assert isinstance(exc, FrameTooLargeError)
        assert any(victim.peer_address in r.getMessage() for r in caplog.records)
        await wait_for(sink.closed)  # the peer sees the connection go away
        # The listener and the other connection keep serving.
        assert await round_trip(srv.address, "still here") == "still here"
        bystander.send("me too")
        assert await wait_for(bystander.recv()) == "me too"
        await bystander.aclose()
    finally:
        await srv.listener.aclose()  # type: ignore[union-attr]


async def test_send_over_limit_raises_and_keeps_connection(server: Server) -> None:
    async with await transports.connect(server.address, token=TOKEN, max_frame_size=100) as conn:
        with pytest.raises(FrameTooLargeError):
            conn.send(b"y" * 200)
        conn.send("fine")
        assert await wait_for(conn.recv()) == "fine"


async def test_malformed_msgpack_closes_with_frame_error(server: Server) -> None:
    conn = await transports.connect(server.address, token=TOKEN)
    sconn = await server.next_conn()
    good = transports.framing.Encoder().encode("valid before junk")
    # 0xc1 is the one byte msgpack never uses. Written raw, bypassing the encoder.
    conn._transport.write(b"".join(good) + struct.pack(">I", 1) + b"\xc1")
    closed_conn, exc = await server.next_close()
    assert closed_conn is sconn
    assert type(exc) is FrameError
    # The valid frame ahead of the junk was still delivered (and echoed).
    assert await wait_for(conn.recv()) == "valid before junk"
    with pytest.raises(CommClosedError):
        await wait_for(conn.recv())
    assert await round_trip(server.address, 42) == 42


async def test_wrong_token_rejected_and_server_keeps_serving(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="transports"):
        with pytest.raises(AuthenticationError, match="wrong cluster token"):
            await transports.connect(server.address, token=b"not the token")
        await wait_until(
            lambda: any("wrong cluster token" in r.getMessage() for r in caplog.records)
        )
    assert server.accepted == []  # on_connection never saw it
    assert await round_trip(server.address, "ok") == "ok"
    assert len(server.accepted) == 1


async def test_close_by_peer_pull_mode(server: Server) -> None:
    conn = await transports.connect(server.address, token=TOKEN)
    sconn = await server.next_conn()
    sconn.send("last words")
    sconn.close()
    assert await wait_for(conn.recv()) == "last words"  # data sent before close still arrives
    with pytest.raises(CommClosedError, match="by peer"):
        await wait_for(conn.recv())
    assert conn.closed
    with pytest.raises(CommClosedError, match="by peer"):
        conn.send("too late")


async def test_close_by_peer_callback_mode_on_close_once(server: Server) -> None:
    conn = await transports.connect(server.address, token=TOKEN)
    sink = Collector().attach(conn)
    sconn = await server.next_conn()
    await sconn.aclose()
    assert await wait_for(sink.closed) is None
    for _ in range(5):
        await asyncio.sleep(0)
    conn.close()
    await conn.aclose()
    assert sink.close_calls == 1
    # And the server side (which closed) got its on_close exactly once too.
    assert server.closes[sconn] == [None]


async def test_close_flushes_pending_and_reaches_server_once(address: str) -> None:
    sinks: asyncio.Queue[Collector] = asyncio.Queue()

    def on_connection(conn: transports.Connection) -> None:
        sinks.put_nowait(Collector(expect=5).attach(conn))  # no echo: nothing to race the close

    async with await transports.listen(address, on_connection, token=TOKEN) as listener:
        conn = await transports.connect(listener.address, token=TOKEN)
        sink = await wait_for(sinks.get())
        for i in range(5):
            conn.send(i)
        conn.close()  # same iteration: pending frames must still be flushed first
        assert await wait_for(sink.closed) is None
        assert sink.messages == [0, 1, 2, 3, 4]
        await conn.aclose()
        assert sink.close_calls == 1


async def test_send_after_close_raises(server: Server) -> None:
    conn = await transports.connect(server.address, token=TOKEN)
    conn.close()
    assert conn.closed
    with pytest.raises(CommClosedError, match="by us"):
        conn.send("x")
    with pytest.raises(CommClosedError):
        await conn.recv()
    await conn.aclose()


async def test_unencodable_raises_type_error_and_connection_survives(server: Server) -> None:
    class Custom:
        pass

    async with await transports.connect(server.address, token=TOKEN) as conn:
        with pytest.raises(TypeError, match="Custom"):
            conn.send({"k": Custom()})
        with pytest.raises(TypeError, match="set"):
            conn.send([1, {2, 3}])
        conn.send("after")
        assert await wait_for(conn.recv()) == "after"


class CountingTransport:
    """Spy around a real transport: counts write() calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_sends_in_one_iteration_coalesce_into_one_write(server: Server) -> None:
    async with await transports.connect(server.address, token=TOKEN) as conn:
        spy = CountingTransport(conn._transport)
        conn._transport = spy
        sink = Collector(expect=50).attach(conn)
        for i in range(50):
            conn.send(i)
        assert spy.writes == []  # buffered, not written yet
        assert await wait_for(sink.done) == list(range(50))
        assert len(spy.writes) == 1

        # Sends in separate iterations are separate writes (so the check above can fail).
        sink2 = Collector(expect=3)
        conn.set_handler(sink2.on_message, sink2.on_close)
        for i in range(3):
            conn.send(i)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await wait_for(sink2.done)
        assert len(spy.writes) == 4


async def test_handler_exception_is_logged_not_fatal(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    def on_connection(conn: transports.Connection) -> None:
        def on_message(msg: Any) -> None:
            if msg == "boom":
                raise RuntimeError("handler bug")
            conn.send(msg)

        conn.set_handler(on_message, lambda exc: None)

    async with await transports.listen(address, on_connection, token=TOKEN) as listener:
        with caplog.at_level(logging.ERROR, logger="transports"):
            async with await transports.connect(listener.address, token=TOKEN) as conn:
                conn.send("boom")
                conn.send("ok")
                assert await wait_for(conn.recv()) == "ok"
        assert any("handler" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_messages_before_set_handler_are_delivered_in_order(address: str) -> None:
    srv = await Server(echo=False).start(address)
    async with srv.listener:  # type: ignore[union-attr]
        conn = await transports.connect(srv.address, token=TOKEN)
        sconn = await srv.next_conn()
        for i in range(100):
            conn.send(i)
        await wait_until(lambda: len(sconn._inbox) == 100)
        sink = Collector(expect=101)
        sconn.set_handler(sink.on_message, sink.on_close)
        assert sink.messages == list(range(100))  # synchronously, inside set_handler
        conn.send(100)
        assert await wait_for(sink.done) == list(range(101))
        await conn.aclose()
        assert await wait_for(sink.closed) is None


async def test_set_handler_after_close_reports_close(address: str) -> None:
    srv = await Server(echo=False).start(address)
    async with srv.listener:  # type: ignore[union-attr]
        conn = await transports.connect(srv.address, token=TOKEN)
        sconn = await srv.next_conn()
        conn.send("bye")
        await conn.aclose()
        await wait_until(lambda: sconn.closed)
        sink = Collector()
        sconn.set_handler(sink.on_message, sink.on_close)
        assert sink.messages == ["bye"]
        assert sink.closed.done() and sink.closed.result() is None
        assert sink.close_calls == 1


async def test_async_on_connection_and_concurrent_clients(address: str) -> None:
    async def on_connection(conn: transports.Connection) -> None:
        while True:
            try:
                msg = await conn.recv()
            except CommClosedError:
                return
            conn.send(msg * 2)

    async with await transports.listen(address, on_connection, token=TOKEN) as listener:

        async def client(k: int) -> list[Any]:
            async with await transports.connect(listener.address, token=TOKEN) as conn:
                out = []
                for i in range(20):
                    conn.send(k * 100 + i)
                    out.append(await wait_for(conn.recv()))
                return out

        results = await asyncio.gather(*(client(k) for k in range(10)))
        for k, res in enumerate(results):
            assert res == [2 * (k * 100 + i) for i in range(20)]


async def test_drain_with_back_pressure(server: Server) -> None:
    async with await transports.connect(server.address, token=TOKEN) as conn:
        chunk = b"z" * (1024 * 1024)
        sink = Collector(expect=16).attach(conn)
        for _ in range(16):
            conn.send(chunk)
            await conn.drain()
        assert len(await wait_for(sink.done, 20)) == 16


async def test_listener_close_stops_accepting_keeps_connections(address: str, scheme: str) -> None:
    srv = await Server().start(address)
    conn = await transports.connect(srv.address, token=TOKEN)
    await srv.listener.aclose()  # type: ignore[union-attr]
    with pytest.raises(ConnectError, match="://"):
        await transports.connect(srv.address, token=TOKEN, timeout=5)
    conn.send("still open")
    assert await wait_for(conn.recv()) == "still open"
    await conn.aclose()
    if scheme == "unix":
        assert not os.path.exists(srv.address[len("unix://") :])


async def test_connect_to_nothing_raises_connect_error(address: str, scheme: str) -> None:
    listener = await transports.listen(address, lambda c: None, token=TOKEN)
    dead = listener.address
    await listener.aclose()
    with pytest.raises(ConnectError) as info:
        await transports.connect(dead, token=TOKEN, timeout=5)
    assert dead in str(info.value)
    assert isinstance(info.value, OSError)
