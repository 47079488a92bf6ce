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
    """One end of a socket channel.

    Opening an end only makes the TCP connection (a writer's connect completes on the reader's
    listen backlog, so no end waits for another to be opened). The writer's first write runs
    the TLS handshake and sends the secret; the reader's first read checks them.
    """

    def __init__(self, sock: socket.socket, secret: bytes, writer: bool, host: str = "") -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._secret = secret
        self._writer = writer
        self._host = host
        self._checked = False  # the TLS handshake done and the secret sent or verified
        self._buffer = bytearray()
        self._stopped = False

    @classmethod
    def accept(cls, key: str, secret: bytes, nonblocking: bool = False) -> SocketChannel:
        """The reader's end: the writer's connection on the listener opened by ``listen``."""
        with _lock:
            server = _listeners.pop(key, None)
        if server is None:
            raise RuntimeError(f"no listener for compiled-graph channel {key} in this process")
        server.settimeout(ACCEPT_TIMEOUT)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            raise RuntimeError(
                f"the writer of compiled-graph channel {key} did not connect within "
                f"{ACCEPT_TIMEOUT:g} s"
            ) from None
        finally:
            server.close()
        return cls(_prepared(conn, nonblocking), secret, writer=False)

    @classmethod
    def connect(cls, address: str, secret: bytes, nonblocking: bool = False) -> SocketChannel:
        """The writer's end: dial the reader."""
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=ACCEPT_TIMEOUT)
        return cls(_prepared(sock, nonblocking), secret, writer=True, host=host)

    def _check(self) -> None:
        """Once, before the first message: TLS if the cluster has it, then the secret."""
        self._checked = True
        blocking = self.sock.getblocking()
        self.sock.setblocking(True)  # a short exchange, with the other end already writing
        self.sock.settimeout(ACCEPT_TIMEOUT)
        tls = _tls()
        try:
            if self._writer:
                if tls is not None:
                    self.sock = tls.client.wrap_socket(self.sock, server_hostname=self._host)
                self.sock.sendall(self._secret)
            else:
                if tls is not None:
                    self.sock = tls.server.wrap_socket(self.sock, server_side=True)
                if not hmac.compare_digest(_recv_exactly(self.sock, SECRET_SIZE), self._secret):
                    raise ConnectionError(
                        "a compiled-graph socket channel was opened by a peer without its "
                        "secret; the channel is closed"
                    )
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise ConnectionError(f"compiled-graph socket channel: {exc}") from None
        self.sock.settimeout(None)
        self.sock.setblocking(blocking)
        self.fd = self.sock.fileno()

    # -- writing --------------------------------------------------------------------------------

    def write(self, kind: int, payload: bytes) -> None:
        if not self._checked:
            self._check()
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
        if not self._checked:
            self._check()
        length, kind = _HEADER.unpack(self._take(_HEADER.size))
        return kind, self._take(length)

    async def aread(self, loop: Any) -> tuple[int, bytes]:
        """read() for an end on an event loop (opened nonblocking)."""
        if not self._checked:
            await self._readable(loop)
            self._check()
        length, kind = _HEADER.unpack(await self._atake(_HEADER.size, loop))
        return kind, await self._atake(length, loop)

    def pending(self) -> bool:
        """Whether a message (or part of one) is here already, where polling the fd would not
        see it (read ahead inside TLS)."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def _take(self, n: int) -> bytes:
        # Exactly what is asked for, no read-ahead: a poll of the fd then tells the truth.
        while len(self._buffer) < n:
            self._fill(self.sock.recv(n - len(self._buffer)))
        return self._cut(n)

    async def _atake(self, n: int, loop: Any) -> bytes:
        while len(self._buffer) < n:
            try:
                data = self.sock.recv(n - len(self._buffer))
            except (BlockingIOError, ssl.SSLWantReadError):
                await self._readable(loop)
                continue
            self._fill(data)
        return self._cut(n)

    async def _readable(self, loop: Any) -> None:
        waiter = loop.create_future()
        loop.add_reader(self.fd, waiter.set_result, None)
        try:
            await waiter
        finally:
            loop.remove_reader(self.fd)

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
        if self._stopped or not self._writer:
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


def _prepared(sock: socket.socket, nonblocking: bool) -> socket.socket:
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(not nonblocking)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Stopped
        data += chunk
    return data
