"""asyncio Protocol shared by every backend: handshake first, then frames.

Until the handshake completes, received bytes only feed the fixed-size auth
exchange; the Connection (and thus the msgpack decoder) does not exist yet.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

from . import auth, tls
from .connection import Connection
from .errors import CommClosedError, ConnectError, TLSError

__all__ = ["Describe", "StreamProtocol"]

logger = logging.getLogger("transports")

# (transport) -> (local_address, peer_address), computed once the transport exists.
Describe = Callable[[asyncio.BaseTransport], "tuple[str, str]"]


class StreamProtocol(asyncio.Protocol):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        token: bytes,
        max_frame_size: int,
        describe: Describe,
        on_made: Callable[[StreamProtocol], None] | None = None,
        handshake_limit: int | None = None,
    ) -> None:
        self._loop = loop
        self._token = token
        self._max_frame_size = max_frame_size
        self._describe = describe
        self._on_made = on_made
        self.transport: asyncio.Transport | None = None
        self.local_address = "?"
        self.peer_address = "?"
        self.connection: Connection | None = None
        # Handshake-phase state.
        self._hs_buf = bytearray()
        self._hs_need = 0
        self._hs_waiter: asyncio.Future[None] | None = None
        # Servers cap what an unauthenticated peer may make us buffer.
        self._hs_limit = handshake_limit
        self._lost = False
        self._lost_exc: BaseException | None = None
        self._client_tls: ssl.SSLContext | None = None  # set once a client's TLS is up
        self._received = 0  # handshake bytes received since TLS began (or since connecting)

    # ------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small request/response frames must not wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_address, self.peer_address = self._describe(transport)
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        conn = self.connection
        if conn is not None:
            conn._data_received(data)
            return
        self._hs_buf += data
        self._received += len(data)
        if self._hs_limit is not None and len(self._hs_buf) > self._hs_limit:
            logger.warning(
                "dropping %s: sent %d bytes before authenticating",
                self.peer_address,
                len(self._hs_buf),
            )
            self._hs_buf.clear()
            self.abort()
            return
        waiter = self._hs_waiter
        if waiter is not None and len(self._hs_buf) >= self._hs_need and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # half-closed peers are treated as gone: close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._lost_exc = exc
        if self.connection is not None:
            self.connection._connection_lost(exc)
        elif self._hs_waiter is not None and not self._hs_waiter.done():
            self._hs_waiter.set_result(None)

    def pause_writing(self) -> None:
        if self.connection is not None:
            self.connection._pause_writing()

    def resume_writing(self) -> None:
        if self.connection is not None:
            self.connection._resume_writing()

    # ------------------------------------------------------------- handshake

    async def _read_exactly(self, n: int) -> bytes:
        while len(self._hs_buf) < n:
            if self._lost:
                if isinstance(self._lost_exc, ssl.SSLError):
                    # TLS 1.3: a client hears that its certificate was refused only here.
                    raise TLSError(
                        f"{self.peer_address}: {tls.describe_tls_error(self._lost_exc)}"
                    ) from self._lost_exc
                raise CommClosedError(
                    f"{self.peer_address} closed the connection during the handshake"
                ) from self._lost_exc
            self._hs_need = n
            self._hs_waiter = self._loop.create_future()
            try:
                await self._hs_waiter
            finally:
                self._hs_waiter = None
        data = bytes(self._hs_buf[:n])
        del self._hs_buf[:n]
        return data

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def server_tls(self, ctx: ssl.SSLContext, timeout: float) -> None:
        """Send the preamble and start TLS; raises HandshakeRejected naming the problem."""
        if self._hs_buf:
            raise auth.HandshakeRejected(
                f"sent {len(self._hs_buf)} plaintext bytes before TLS: not a TLS client "
                f"(first bytes {bytes(self._hs_buf[:8])!r})"
            )
        assert self.transport is not None
        self._write(tls.PREAMBLE)
        try:
            self.transport = await tls.start_tls(
                self.transport, self, ctx, server_side=True, timeout=timeout
            )
        except TLSError as exc:
            raise auth.HandshakeRejected(f"TLS handshake failed: {exc}") from exc

    async def client_tls(self, ctx: ssl.SSLContext, address: str, timeout: float) -> None:
        """Read the server's preamble and start TLS; raises TLSError naming the problem."""
        hello = await self._read_exactly(len(tls.PREAMBLE))
        if hello[: len(auth.MAGIC)] != auth.MAGIC:
            raise ConnectError(f"{address} is not an actorflow endpoint (bad handshake magic)")
        if hello != tls.PREAMBLE:
            raise TLSError(
                f"{address} does not use TLS, and this process requires it (ACTORFLOW_TLS is "
                "set here but its cluster was started without --tls)"
            )
        assert self.transport is not None
        try:
            self.transport = await tls.start_tls(
                self.transport, self, ctx, server_side=False, timeout=timeout
            )
        except TLSError as exc:
            raise TLSError(f"{address}: {exc}") from exc
        self._client_tls, self._received = ctx, 0

    async def server_handshake(self) -> Connection:
        """Raises auth.HandshakeRejected / CommClosedError if the client must be dropped."""
        await auth.server_handshake(self._read_exactly, self._write, self._token)
        return self._open()

    async def client_handshake(self, address: str) -> Connection:
        try:
            await auth.client_handshake(self._read_exactly, self._write, self._token, address)
        except CommClosedError as exc:
            if self._client_tls is None or self._received:
                raise
            # Closed as TLS began, before the server said a word: it refused our certificate.
            problem = tls.own_certificate_problem(self._client_tls) or (
                "not signed by its cluster's CA, expired, or none; its log says which"
            )
            raise TLSError(
                f"{address} closed the connection as TLS began: it refused our certificate "
                f"({problem})"
            ) from exc
        return self._open()

    def _open(self) -> Connection:
        assert self.transport is not None
        conn = Connection(
            self._loop,
            self.transport,
            local_address=self.local_address,
            peer_address=self.peer_address,
            max_frame_size=self._max_frame_size,
        )
        # What TLS proved about the peer: None without TLS, or if it presented no certificate.
        conn.peer_certificate = self.transport.get_extra_info("peercert") or None
        conn.tls = self.transport.get_extra_info("sslcontext") is not None
        self.connection = conn
        # The peer may have pipelined frames right behind its last handshake bytes.
        leftover, self._hs_buf = self._hs_buf, bytearray()
        if leftover:
            conn._data_received(leftover)
        if self._lost:
            conn._connection_lost(self._lost_exc)
        return conn

    def close(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abort()
