"""Backend-specific behaviour: unix socket files, inproc naming and loops, the registry."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from tx_helpers import TOKEN, Server, round_trip, wait_for

import transports
from transports import ConnectError, Connection, Listener
from transports.inproc import InprocBackend

pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------- unix


async def test_unix_removes_stale_socket_file(short_tmp: Path) -> None:
    path = short_tmp / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # leaves the file behind, nobody listening
    assert path.exists()
    srv = await Server().start(f"unix://{path}")
    assert await round_trip(srv.address) == "ping"
    await srv.listener.aclose()  # type: ignore[union-attr]
    assert not path.exists()  # removed on close


async def test_unix_refuses_to_steal_a_live_socket(short_tmp: Path) -> None:
    address = f"unix://{short_tmp}/live.sock"
    srv = await Server().start(address)
    with pytest.raises(OSError) as info:
        await transports.listen(address, lambda c: None, token=TOKEN)
    assert info.value.errno == errno.EADDRINUSE
    assert await round_trip(address) == "ping"  # the original still works
    await srv.listener.aclose()  # type: ignore[union-attr]


async def test_unix_refuses_to_replace_a_regular_file(short_tmp: Path) -> None:
    path = short_tmp / "precious.txt"
    path.write_text("data")
    with pytest.raises(OSError, match="not a socket"):
        await transports.listen(f"unix://{path}", lambda c: None, token=TOKEN)
    assert path.read_text() == "data"


async def test_unix_requires_absolute_path() -> None:
    with pytest.raises(ValueError, match="absolute"):
        await transports.listen("unix://relative.sock", lambda c: None, token=TOKEN)


# ----------------------------------------------------------------- inproc


async def test_inproc_names() -> None:
    a = await transports.listen("inproc://", lambda c: None, token=TOKEN)
    b = await transports.listen("inproc://", lambda c: None, token=TOKEN)
    assert a.address != b.address and a.address.startswith("inproc://")
    named = await transports.listen("inproc://svc", lambda c: None, token=TOKEN)
    with pytest.raises(OSError, match="in use"):
        await transports.listen("inproc://svc", lambda c: None, token=TOKEN)
    for listener in (a, b, named):
        await listener.aclose()
    again = await transports.listen("inproc://svc", lambda c: None, token=TOKEN)
    await again.aclose()


async def test_inproc_other_loop_is_a_clear_error() -> None:
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    def other_thread() -> None:
        async def main() -> None:
            listener = await transports.listen("inproc://", lambda c: None, token=TOKEN)
            box["address"] = listener.address
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            await listener.aclose()

        asyncio.run(main())

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10)
        with pytest.raises(ConnectError, match="another event loop"):
            await transports.connect(box["address"], token=TOKEN)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)


async def test_inproc_honours_max_frame_size() -> None:
    srv = await Server().start("inproc://", max_frame_size=64)
    conn = await transports.connect(srv.address, token=TOKEN)
    conn.send(b"q" * 100)
    _, exc = await srv.next_close()
    assert isinstance(exc, transports.FrameTooLargeError)
    await conn.aclose()
    await srv.listener.aclose()  # type: ignore[union-attr]


# --------------------------------------------------------------- registry


async def test_register_custom_backend() -> None:
    calls: list[str] = []
    inner = InprocBackend()

    class Mem:
        """Serves ``mem://x`` through inproc://x, recording use."""

        async def listen(self, address: str, on_connection: Any, **kw: Any) -> Listener:
            calls.append("listen")
            return await inner.listen(address.replace("mem://", "inproc://"), on_connection, **kw)

        async def connect(self, address: str, **kw: Any) -> Connection:
            calls.append("connect")
            return await inner.connect(address.replace("mem://", "inproc://"), **kw)

    transports.register_backend("mem", Mem())
    listener = await Server().start("mem://custom-test")
    assert await round_trip("mem://custom-test") == "ping"
    assert calls == ["listen", "connect"]
    await listener.listener.aclose()  # type: ignore[union-attr]


async def test_unknown_scheme_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no transport backend for scheme 'udp'"):
        await transports.connect("udp://1.2.3.4:5", token=TOKEN)
    with pytest.raises(ValueError, match="malformed address"):
        await transports.listen("localhost:80", lambda c: None, token=TOKEN)
    with pytest.raises(TypeError, match="token"):
        await transports.connect("inproc://x", token="str token")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="token"):
        await transports.listen("inproc://", lambda c: None, token=b"")


async def test_connection_repr_and_closed_future() -> None:
    srv = await Server().start("inproc://")
    conn = await transports.connect(srv.address, token=TOKEN)
    assert "open" in repr(conn) and srv.address in repr(conn)
    await conn.aclose()
    assert conn.closed and "closed" in repr(conn)
    await srv.listener.aclose()  # type: ignore[union-attr]
    assert srv.listener.closed  # type: ignore[union-attr]


def test_public_api() -> None:
    assert set(transports.__all__) >= {
        "listen",
        "connect",
        "Listener",
        "Connection",
        "register_backend",
        "parse_address",
        "DEFAULT_MAX_FRAME_SIZE",
        "TransportError",
        "CommClosedError",
        "ConnectError",
        "AuthenticationError",
        "FrameError",
        "FrameTooLargeError",
    }
    for name in transports.__all__:
        assert hasattr(transports, name)
    for exc in ("CommClosedError", "ConnectError", "AuthenticationError", "FrameError"):
        assert issubclass(getattr(transports, exc), transports.TransportError)
    assert issubclass(transports.FrameTooLargeError, transports.FrameError)
    assert os.path.exists(os.path.join(os.path.dirname(transports.__file__), "py.typed"))


async def test_recv_and_set_handler_are_exclusive() -> None:
    srv = await Server().start("inproc://")
    conn = await transports.connect(srv.address, token=TOKEN)
    pending = asyncio.ensure_future(conn.recv())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="recv"):
        conn.set_handler(lambda m: None, lambda e: None)
    conn.send("x")
    assert await wait_for(pending) == "x"
    conn.set_handler(lambda m: None, lambda e: None)
    with pytest.raises(RuntimeError, match="set_handler"):
        await conn.recv()
    await conn.aclose()
    await srv.listener.aclose()  # type: ignore[union-attr]


async def test_inproc_drain_applies_back_pressure() -> None:
    srv = await Server().start("inproc://")
    conn = await transports.connect(srv.address, token=TOKEN)
    sink_done = asyncio.get_running_loop().create_future()
    got: list[Any] = []

    def on_message(msg: Any) -> None:
        got.append(msg)
        if len(got) == 2:
            sink_done.set_result(None)

    conn.set_handler(on_message, lambda exc: None)
    conn.send(b"a" * 200_000)
    drained = asyncio.ensure_future(conn.drain())
    await asyncio.sleep(0)
    assert not drained.done()  # over the high-water mark: drain waits for delivery
    await wait_for(drained)
    conn.send(b"b")
    await wait_for(sink_done)
    assert got == [b"a" * 200_000, b"b"]
    await conn.aclose()
    await srv.listener.aclose()  # type: ignore[union-attr]


def test_never_imports_actorflow() -> None:
    import subprocess
    import sys

    code = "import sys, transports; assert 'actorflow' not in sys.modules, 'imported actorflow'"
    root = os.path.dirname(os.path.dirname(transports.__file__))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


async def test_failing_async_on_connection_closes_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_connection(conn: Connection) -> None:
        raise RuntimeError("setup failed")

    async with await transports.listen("inproc://", on_connection, token=TOKEN) as listener:
        conn = await transports.connect(listener.address, token=TOKEN)
        with pytest.raises(transports.CommClosedError, match="by peer"):
            await wait_for(conn.recv())
    assert any("on_connection raised" in r.getMessage() for r in caplog.records)
