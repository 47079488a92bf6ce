"""Socket channels of a compiled graph: one writer, one reader, on different machines.

The reader's process listens (``listen``, run in it before the loops start, through
``__ray_call__``); the writer connects straight to it, so a value crosses one TCP connection,
with no runtime, event loop or scheduler in between. The connection is authenticated by a
per-channel secret that the driver made and sent to both ends over the cluster's own
(authenticated) connections, and is TLS when the cluster is (``runtime.tls``).

A message is ``<length: u32><kind: u8><payload>``, as in shared-memory channels; the ends have
the same interface (``write``, ``read``, ``aread``, ``ready``, ``stop``, ``close``). The end of
the writer's stream (its loop ended, or the driver stopped it) stops the reader.
"""

from __future__ import annotations

import hmac
import os
import secrets
import select
import socket
import ssl
import struct
import threading
from typing import Any

from actorflow.dag.channel import Stopped

SECRET_SIZE = 32
ACCEPT_TIMEOUT = 60.0  # the writer connects as its loop starts
_HEADER = struct.Struct("<IB")

# Listeners opened in this process, by channel key, until their channel's reader takes them.
_listeners: dict[str, socket.socket] = {}
_lock = threading.Lock()


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_SIZE)


def _tls() -> Any:
    from actorflow._private.worker import context

    core = context.core_or_none()
    return getattr(core.runtime, "tls", None) if core is not None else None


def listen(_instance: Any, key: str, host: str) -> str:
    """In the reader's process: listen for the channel's writer; the address to dial."""
    server = socket.create_server((host, 0))
    with _lock:
        _listeners[key] = server
    bound_host, port = server.getsockname()[:2]
    return f"{bound_host}:{port}"


def host_of(_instance: Any) -> str:
    """In an actor's process: the interface its node serves on (where to listen)."""
    from actorflow._private.worker import context

    core = context.core_or_none()
    if core is None:
        raise RuntimeError("socket channels are set up in actor processes only")
    return core.address.removeprefix("tcp://").rsplit(":", 1)[0]


class SocketChannel:
    """One end of a socket channel."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._buffer = bytearray()
        self._stopped = False

    @classmethod
    def accept(cls, key: str, secret: bytes, nonblocking: bool = False) -> SocketChannel:
        """The reader's end: wait for the writer on the listener opened by ``listen``."""
        with _lock:
            server = _listeners.pop(key, None)
        if server is None:
            raise RuntimeError(f"no listener for compiled-graph channel {key} in this process")
        server.settimeout(ACCEPT_TIMEOUT)
        try:
            while True:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    raise RuntimeError(
                        f"the writer of compiled-graph channel {key} did not connect "
                        f"within {ACCEPT_TIMEOUT:g} s"
                    ) from None
                conn.settimeout(ACCEPT_TIMEOUT)
                tls = _tls()
                try:
                    if tls is not None:
                        conn = tls.server.wrap_socket(conn, server_side=True)
                    if hmac.compare_digest(_recv_exactly(conn, SECRET_SIZE), secret):
                        break
                except (OSError, ssl.SSLError, Stopped):
                    pass
                conn.close()  # not the writer: keep waiting for it
        finally:
            server.close()
        return cls._ready_socket(conn, nonblocking)

    @classmethod
    def connect(cls, address: str, secret: bytes, nonblocking: bool = False) -> SocketChannel:
        """The writer's end: dial the reader and prove the channel's secret."""
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=ACCEPT_TIMEOUT)
        tls = _tls()
        if tls is not None:
            sock = tls.client.wrap_socket(sock, server_hostname=host)
        sock.sendall(secret)
        return cls._ready_socket(sock, nonblocking)

    @classmethod
    def _ready_socket(cls, sock: socket.socket, nonblocking: bool) -> SocketChannel:
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(not nonblocking)
        return cls(sock)

    # -- writing --------------------------------------------------------------------------------

    def write(self, kind: int, payload: bytes) -> None:
        frame = _HEADER.pack(len(payload), kind) + payload
        if self.sock.getblocking():
            self.sock.sendall(frame)
            return
        view = memoryview(frame)
        while view:  # an end on an event loop: small frames go at once; wait out a full buffer
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                select.select([], [self.fd], [])
                continue
            view = view[sent:]

    # -- reading --------------------------------------------------------------------------------

    def read(self) -> tuple[int, bytes]:
        """Block until the next message; Stopped when the writer's stream ended."""
        length, kind = _HEADER.unpack(self._take(_HEADER.size))
        return kind, self._take(length)

    async def aread(self, loop: Any) -> tuple[int, bytes]:
        """read() for an end on an event loop (opened nonblocking)."""
        length, kind = _HEADER.unpack(await self._atake(_HEADER.size, loop))
        return kind, await self._atake(length, loop)

    def ready(self, timeout: float | None) -> bool:
        if self._buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(ms))

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill(self.sock.recv(max(65536, n - len(self._buffer))))
        return self._cut(n)

    async def _atake(self, n: int, loop: Any) -> bytes:
        while len(self._buffer) < n:
            try:
                data = self.sock.recv(max(65536, n - len(self._buffer)))
            except (BlockingIOError, ssl.SSLWantReadError):
                waiter = loop.create_future()
                loop.add_reader(self.fd, waiter.set_result, None)
                try:
                    await waiter
                finally:
                    loop.remove_reader(self.fd)
                continue
            self._fill(data)
        return self._cut(n)

    def _fill(self, data: bytes) -> None:
        if not data:
            raise Stopped
        self._buffer += data

    def _cut(self, n: int) -> bytes:
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    # -- ending ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the reader of this end's stream (the driver's teardown)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Stopped
        data += chunk
    return data


def channel_key(graph_id: str, cid: int) -> str:
    return f"{graph_id}-{cid}-{os.getpid()}"
