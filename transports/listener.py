"""Listener handle, and the server-side path from raw accept to on_connection."""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .auth import SERVER_RECEIVE_LIMIT, HandshakeRejected
from .connection import Connection
from .errors import TransportError
from .stream import Describe, StreamProtocol

__all__ = ["Acceptor", "Listener", "OnConnection"]

logger = logging.getLogger("transports")

OnConnection = Callable[[Connection], Any]


class Listener:
    """A bound endpoint. Closing it stops accepting; established connections stay open."""

    def __init__(self, address: str, close: Callable[[], None]) -> None:
        self.address = address
        self._close = close
        self._closed = False

    def __repr__(self) -> str:
        return f"<Listener {self.address}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    async def aclose(self) -> None:
        self.close()
        # Let the loop run the socket teardown callbacks scheduled by close().
        await asyncio.sleep(0)

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Acceptor:
    """Authenticates each accepted transport, then hands the Connection to on_connection."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_connection: OnConnection,
        *,
        token: bytes,
        max_frame_size: int,
        handshake_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not callable(on_connection):
            raise TypeError("on_connection must be callable")
        self._loop = loop
        self._on_connection = on_connection
        self._token = token
        self._max_frame_size = max_frame_size
        self._handshake_timeout = handshake_timeout
        self._tls = tls
        self._handshaking: set[StreamProtocol] = set()
        # Strong references: the loop only keeps weak ones to tasks.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def protocol(self, describe: Describe) -> StreamProtocol:
        return StreamProtocol(
            self._loop,
            token=self._token,
            max_frame_size=self._max_frame_size,
            describe=describe,
            on_made=self._accepted,
            handshake_limit=SERVER_RECEIVE_LIMIT,
        )

    def close(self) -> None:
        """Drop connections still in the handshake; they were never handed out."""
        self._closed = True
        for proto in list(self._handshaking):
            proto.abort()  # its handshake task then fails on the lost transport
        self._handshaking.clear()

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accepted(self, proto: StreamProtocol) -> None:
        if self._closed:
            proto.abort()
            return
        self._handshaking.add(proto)
        self._spawn(self._authenticate(proto))

    async def _handshake(self, proto: StreamProtocol) -> Connection:
        if self._tls is not None:  # TLS first: the token handshake runs inside it
            await proto.server_tls(self._tls, self._handshake_timeout)
        return await proto.server_handshake()

    async def _authenticate(self, proto: StreamProtocol) -> None:
        try:
            conn = await asyncio.wait_for(self._handshake(proto), self._handshake_timeout)
        except HandshakeRejected as exc:
            logger.warning("rejected connection from %s: %s", proto.peer_address, exc)
            proto.close()  # close, not abort: the REJECT byte must get out
            return
        except asyncio.TimeoutError:
            logger.info(
                "dropping %s: no valid handshake within %.3gs",
                proto.peer_address,
                self._handshake_timeout,
            )
            proto.abort()
            return
        except TransportError as exc:  # peer vanished mid-handshake
            logger.debug("handshake with %s failed: %s", proto.peer_address, exc)
            proto.abort()
            return
        finally:
            self._handshaking.discard(proto)
        if self._closed:
            conn.close()
            return
        self._deliver(conn)

    def _deliver(self, conn: Connection) -> None:
        try:
            result = self._on_connection(conn)
        except Exception:
            logger.exception("on_connection raised for %s; closing it", conn.peer_address)
            conn.close()
            return
        if inspect.isawaitable(result):
            self._spawn(self._await_handler(conn, result))

    async def _await_handler(self, conn: Connection, awaitable: Any) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("on_connection raised for %s; closing it", conn.peer_address)
            conn.close()
