"""TCP backend: ``tcp://host:port`` (port 0 binds an ephemeral port)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from .address import format_host_port, parse_address, split_host_port
from .backend import open_stream
from .connection import Connection
from .listener import Acceptor, Listener, OnConnection

__all__ = ["TCPBackend"]

_BACKLOG = 1024  # a whole cluster may dial one head node at once


def _fmt(sockaddr: Any) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return "tcp://" + format_host_port(str(sockaddr[0]), int(sockaddr[1]))
    return f"tcp://{sockaddr}"


def _describe(transport: asyncio.BaseTransport) -> tuple[str, str]:
    return _fmt(transport.get_extra_info("sockname")), _fmt(transport.get_extra_info("peername"))


def _location(address: str) -> tuple[str, int]:
    scheme, location = parse_address(address)
    if scheme != "tcp":
        raise ValueError(f"not a tcp address: {address!r}")
    return split_host_port(address, location)


class TCPBackend:
    async def listen(
        self,
        address: str,
        on_connection: OnConnection,
        *,
        token: bytes,
        max_frame_size: int,
        handshake_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> Listener:
        host, port = _location(address)
        loop = asyncio.get_running_loop()
        acceptor = Acceptor(
            loop,
            on_connection,
            token=token,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
            tls=tls,
        )
        server = await loop.create_server(
            lambda: acceptor.protocol(_describe), host, port, backlog=_BACKLOG
        )
        bound = _fmt(server.sockets[0].getsockname())

        def close() -> None:
            server.close()
            acceptor.close()

        return Listener(bound, close)

    async def connect(
        self,
        address: str,
        *,
        token: bytes,
        timeout: float,
        max_frame_size: int,
        tls: ssl.SSLContext | None = None,
    ) -> Connection:
        host, port = _location(address)
        loop = asyncio.get_running_loop()
        return await open_stream(
            address,
            lambda factory: loop.create_connection(factory, host, port),
            _describe,
            token=token,
            timeout=timeout,
            max_frame_size=max_frame_size,
            tls=tls,
        )
