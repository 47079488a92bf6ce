"""In-process backend: ``inproc://name`` (``inproc://`` alone picks a unique name).

Each connection is a pair of in-memory transports that hand bytes to each
other with ``loop.call_soon``, driving the very same StreamProtocol as tcp and
unix. So the token handshake, msgpack encoding, framing and max_frame_size
behave identically; only the kernel is skipped.

Both ends must live on the same event loop: connecting to a listener owned by
another loop raises ConnectError (cross-thread delivery would need locking on
the hot path for a case the runtime does not have).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import ssl
from typing import Any

from .address import parse_address
from .backend import open_stream
from .connection import Connection
from .errors import ConnectError
from .listener import Acceptor, Listener, OnConnection
from .stream import StreamProtocol

__all__ = ["InprocBackend"]

_HIGH_WATER = 64 * 1024  # asyncio's default for sockets
_listeners: dict[str, _InprocEndpoint] = {}
_auto_names = itertools.count(1)
_client_ids = itertools.count(1)


class _InprocEndpoint:
    __slots__ = ("acceptor", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, acceptor: Acceptor) -> None:
        self.loop = loop
        self.acceptor = acceptor


class _PipeTransport(asyncio.Transport):
    """One end of an in-memory byte pipe, with socket-like close semantics."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        super().__init__(extra={"inproc": name})
        self._loop = loop
        self._protocol: Any = None
        self._peer: _PipeTransport | None = None
        self._outbox: list[bytes] = []
        self._outbox_size = 0
        self._scheduled = False
        # Flow control like a socket's, so drain() gives back-pressure on inproc too:
        # without it a tight send/drain loop would never yield to the receiver.
        self._high_water = _HIGH_WATER
        self._low_water = _HIGH_WATER // 4
        self._paused = False
        self._closing = False
        self._lost = False

    # Like a socket, bytes written in one iteration reach the peer together, next iteration.
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._outbox.append(bytes(data))
        self._outbox_size += len(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._deliver)
        if not self._paused and self._outbox_size > self._high_water:
            self._paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _deliver(self) -> None:
        self._scheduled = False
        if not self._outbox:
            return
        data = self._outbox[0] if len(self._outbox) == 1 else b"".join(self._outbox)
        self._outbox.clear()
        self._outbox_size = 0
        if self._paused and not self._lost:
            self._paused = False
            self._protocol.resume_writing()
        peer = self._peer
        if peer is not None and not peer._lost:
            peer._protocol.data_received(data)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._shutdown)  # queued after any pending _deliver

    def abort(self) -> None:
        self._outbox.clear()
        self._outbox_size = 0
        if not self._closing:
            self._closing = True
            self._loop.call_soon(self._shutdown)

    def _shutdown(self) -> None:
        self._deliver()
        peer = self._peer
        if peer is not None:
            peer._eof()
        self._lose()

    def _eof(self) -> None:
        if self._lost:
            return
        if not self._protocol.eof_received():
            self.close()

    def _lose(self) -> None:
        if not self._lost:
            self._lost = True
            self._closing = True
            self._protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return self._outbox_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water = _HIGH_WATER if high is None else high
        self._low_water = self._high_water // 4 if low is None else low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def can_write_eof(self) -> bool:
        return False

    def is_reading(self) -> bool:
        return not self._lost

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]


def _name(address: str) -> str:
    scheme, name = parse_address(address)
    if scheme != "inproc":
        raise ValueError(f"not an inproc address: {address!r}")
    return name


class InprocBackend:
    async def listen(
        self,
        address: str,
        on_connection: OnConnection,
        *,
        token: bytes,
        max_frame_size: int,
        handshake_timeout: float,
        tls: ssl.SSLContext | None = None,  # same machine only: no TLS needed
    ) -> Listener:
        name = _name(address)
        if not name:
            name = f"auto-{next(_auto_names)}"
            while name in _listeners:
                name = f"auto-{next(_auto_names)}"
        elif name in _listeners:
            raise OSError(errno.EADDRINUSE, f"inproc://{name} is already in use")
        loop = asyncio.get_running_loop()
        acceptor = Acceptor(
            loop,
            on_connection,
            token=token,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
        )
        endpoint = _InprocEndpoint(loop, acceptor)
        _listeners[name] = endpoint

        def close() -> None:
            if _listeners.get(name) is endpoint:
                del _listeners[name]
            acceptor.close()

        return Listener(f"inproc://{name}", close)

    async def connect(
        self,
        address: str,
        *,
        token: bytes,
        timeout: float,
        max_frame_size: int,
        tls: ssl.SSLContext | None = None,  # same machine only: no TLS needed
    ) -> Connection:
        name = _name(address)
        endpoint = _listeners.get(name)
        if endpoint is None:
            raise ConnectError(f"no inproc listener at {address}")
        loop = asyncio.get_running_loop()
        if endpoint.loop is not loop:
            raise ConnectError(
                f"the inproc listener at {address} runs on another event loop; "
                "inproc connections only work within one loop (use tcp or unix)"
            )
        server_addr = f"inproc://{name}"
        client_addr = f"inproc://{name}#client-{next(_client_ids)}"

        async def create(
            factory: Any,
        ) -> tuple[asyncio.BaseTransport, StreamProtocol]:
            client_end = _PipeTransport(loop, client_addr)
            server_end = _PipeTransport(loop, server_addr)
            client_end._peer, server_end._peer = server_end, client_end
            server_proto = endpoint.acceptor.protocol(lambda t: (server_addr, client_addr))
            client_proto: StreamProtocol = factory()
            server_end.set_protocol(server_proto)
            client_end.set_protocol(client_proto)
            server_proto.connection_made(server_end)
            client_proto.connection_made(client_end)
            return client_end, client_proto

        return await open_stream(
            address,
            create,
            lambda t: (client_addr, server_addr),
            token=token,
            timeout=timeout,
            max_frame_size=max_frame_size,
        )
