"""The token handshake against raw sockets and fake servers (tcp and unix)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tx_helpers import TOKEN, Server, round_trip, wait_for

import transports
from transports import AuthenticationError, ConnectError, auth

pytestmark = pytest.mark.timeout(30)

HELLO = 4 + 1 + auth.NONCE_SIZE


@pytest.fixture(params=["tcp", "unix"])
def socket_address(request: pytest.FixtureRequest, short_tmp: Path) -> str:
    return "tcp://127.0.0.1:0" if request.param == "tcp" else f"unix://{short_tmp}/s.sock"


@pytest.fixture
async def fast_server(socket_address: str) -> AsyncIterator[Server]:
    srv = await Server().start(socket_address, handshake_timeout=0.3)
    yield srv
    await srv.listener.aclose()  # type: ignore[union-attr]


async def raw_open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    scheme, location = transports.parse_address(address)
    if scheme == "tcp":
        host, _, port = location.rpartition(":")
        return await asyncio.open_connection(host, int(port))
    return await asyncio.open_unix_connection(location)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server hangs up (a reset counts as hanging up)."""
    try:
        return await wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b"<reset>"


async def test_server_hello_format(fast_server: Server) -> None:
    reader, writer = await raw_open(fast_server.address)
    hello = await wait_for(reader.readexactly(HELLO))
    assert hello[:5] == b"AFLW\x01"
    writer.close()


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(lambda: os.urandom(69), id="random-bytes"),
        pytest.param(lambda: b"XXXX\x01" + os.urandom(64), id="wrong-magic"),
        pytest.param(lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64, id="http"),
    ],
)
async def test_junk_client_is_dropped_and_server_keeps_serving(
    fast_server: Server, junk: Callable[[], bytes]
) -> None:
    reader, writer = await raw_open(fast_server.address)
    await wait_for(reader.readexactly(HELLO))
    writer.write(junk())
    assert await read_to_eof(reader) in (b"", b"<reset>")  # no accept, no frames
    writer.close()
    assert fast_server.accepted == []
    assert await round_trip(fast_server.address, "alive") == "alive"


async def test_wrong_version_gets_reject_code(fast_server: Server) -> None:
    reader, writer = await raw_open(fast_server.address)
    await wait_for(reader.readexactly(HELLO))
    writer.write(b"AFLW\x63" + os.urandom(64))
    assert await read_to_eof(reader) == auth.REJECT_VERSION
    writer.close()
    assert fast_server.accepted == []


async def test_wrong_mac_gets_reject_code(fast_server: Server) -> None:
    reader, writer = await raw_open(fast_server.address)
    await wait_for(reader.readexactly(HELLO))
    writer.write(b"AFLW\x01" + os.urandom(64))
    assert await read_to_eof(reader) == auth.REJECT
    writer.close()


@pytest.mark.parametrize("send", [b"", b"AFLW\x01\x00\x00"], ids=["silent", "slowloris"])
async def test_stalled_client_dropped_after_handshake_timeout(
    fast_server: Server, send: bytes
) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await raw_open(fast_server.address)
    started = loop.time()
    await wait_for(reader.readexactly(HELLO))
    writer.write(send)
    assert await read_to_eof(reader) in (b"", b"<reset>")
    elapsed = loop.time() - started
    assert 0.2 < elapsed < 5, elapsed
    writer.close()
    assert fast_server.accepted == []
    assert await round_trip(fast_server.address, "alive") == "alive"


async def test_listener_close_drops_clients_mid_handshake(socket_address: str) -> None:
    srv = await Server().start(socket_address)
    reader, writer = await raw_open(srv.address)
    await wait_for(reader.readexactly(HELLO))
    await srv.listener.aclose()  # type: ignore[union-attr]
    assert await read_to_eof(reader) in (b"", b"<reset>")
    writer.close()


# ---------------------------------------------------------------- fake servers

FakeServer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve_fake(handler: FakeServer) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"tcp://127.0.0.1:{port}"


async def test_client_rejects_server_that_cannot_prove_the_token() -> None:
    captured: list[bytes] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"AFLW\x01" + os.urandom(32))
        captured.append(await reader.readexactly(69))
        writer.write(auth.ACCEPT + os.urandom(32))  # accepts anyone, proves nothing
        await writer.drain()
        await reader.read()
        writer.close()

    server, address = await serve_fake(impostor)
    async with server:
        with pytest.raises(AuthenticationError, match="peer failed to prove"):
            await transports.connect(address, token=TOKEN, timeout=5)
    assert TOKEN not in captured[0]  # never in clear


async def test_client_rejects_non_actorflow_server() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\0" * 40)
        await writer.drain()
        await reader.read()
        writer.close()

    server, address = await serve_fake(http)
    async with server:
        with pytest.raises(ConnectError, match="not an actorflow endpoint"):
            await transports.connect(address, token=TOKEN, timeout=5)


async def test_connect_timeout_becomes_connect_error() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server, address = await serve_fake(mute)
    async with server:
        with pytest.raises(ConnectError, match="timed out") as info:
            await transports.connect(address, token=TOKEN, timeout=0.2)
        assert address in str(info.value)


async def test_server_hangs_up_during_handshake() -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server, address = await serve_fake(rude)
    async with server:
        with pytest.raises(ConnectError, match="127.0.0.1"):
            await transports.connect(address, token=TOKEN, timeout=5)


async def test_rejected_token_logged_with_peer(
    fast_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="transports"):
        with pytest.raises(AuthenticationError):
            await transports.connect(fast_server.address, token=b"other", timeout=5)
        await round_trip(fast_server.address)  # by now the rejection has been logged
    scheme = fast_server.address.split(":")[0]
    assert any(
        "wrong cluster token" in r.getMessage() and f"{scheme}://" in r.getMessage()
        for r in caplog.records
    )


async def test_client_may_not_pipeline_before_it_is_accepted(fast_server: Server) -> None:
    """Even with the right token: bytes beyond the hello before the verdict are a violation
    (this caps what an unauthenticated peer can make the server buffer)."""
    reader, writer = await raw_open(fast_server.address)
    hello = await wait_for(reader.readexactly(HELLO))
    nonce_s, nonce_c = hello[5:], os.urandom(32)
    proof = b"AFLW\x01" + nonce_c + auth.client_mac(TOKEN, nonce_s, nonce_c)
    writer.write(proof + b"\0" * 100_000)
    assert await read_to_eof(reader) in (b"", b"<reset>")
    writer.close()
    assert fast_server.accepted == []


async def test_raw_client_with_right_token_is_accepted(fast_server: Server) -> None:
    """The wire format is exactly as documented (a non-Python peer could implement it)."""
    reader, writer = await raw_open(fast_server.address)
    hello = await wait_for(reader.readexactly(HELLO))
    nonce_s, nonce_c = hello[5:], os.urandom(32)
    writer.write(b"AFLW\x01" + nonce_c + auth.client_mac(TOKEN, nonce_s, nonce_c))
    verdict = await wait_for(reader.readexactly(33))
    assert verdict == auth.ACCEPT + auth.server_mac(TOKEN, nonce_c, nonce_s)
    body = b"\x93\x01\xa1x\xc4\x00"  # msgpack [1, "x", b""]
    writer.write(b"\x00\x00\x00\x06" + body[:3])  # split mid-frame on purpose
    await writer.drain()
    writer.write(body[3:])
    assert await wait_for(reader.readexactly(10)) == b"\x00\x00\x00\x06" + body  # echoed
    assert len(fast_server.accepted) == 1
    writer.close()
