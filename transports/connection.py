"""Connection: message-level API over an authenticated byte transport."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .errors import CommClosedError, FrameError
from .framing import DEFAULT_MAX_FRAME_SIZE, Encoder, FrameDecoder

__all__ = ["CloseHandler", "Connection", "MessageHandler"]

logger = logging.getLogger("transports")

MessageHandler = Callable[[Any], None]
CloseHandler = Callable[[BaseException | None], None]


class Connection:
    """A framed, authenticated, bidirectional message pipe.

    Created by ``connect()`` or handed to a listener's ``on_connection``; not
    meant to be instantiated directly. All methods must be called from the
    event loop thread that owns the connection.

    Receiving has two modes: callback mode (``set_handler``), the fast path,
    and pull mode (``await recv()``) when no handler is set. Sending is
    synchronous and buffered: every frame sent during one loop iteration goes
    out in a single ``transport.write``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.BaseTransport,
        *,
        local_address: str,
        peer_address: str,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._loop = loop
        self._transport: Any = transport  # Any: tests swap in a spy
        self.local_address = local_address
        self.peer_address = peer_address
        self.tls = False  # set by the stream once authenticated: over TLS?
        self.peer_certificate: dict[str, Any] | None = None  # the peer's, checked by TLS
        self._encoder = Encoder(max_frame_size)
        self._decoder = FrameDecoder(max_frame_size)

        self._wbuf: list[bytes] = []
        self._flush_scheduled = False

        self._on_message: MessageHandler | None = None
        self._on_close: CloseHandler | None = None
        self._inbox: deque[Any] = deque()  # messages waiting for recv()/set_handler
        self._recv_waiters: deque[asyncio.Future[None]] = deque()

        self._write_paused = False
        self._drain_waiters: deque[asyncio.Future[None]] = deque()

        # Closing state. _closing: no more sends/deliveries; _lost: transport gone.
        self._closing = False
        self._user_closed = False
        self._lost = False
        self._closed_by: str | None = None  # "us" or "peer", for error messages
        self._close_exc: BaseException | None = None
        self._close_reported = False
        self._closed_fut: asyncio.Future[None] = loop.create_future()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection {self.local_address} -> {self.peer_address} {state}>"

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def max_frame_size(self) -> int:
        return self._encoder.max_frame_size

    def _closed_error(self) -> CommClosedError:
        who = self._closed_by or "us"
        reason = f": {self._close_exc}" if self._close_exc is not None else ""
        err = CommClosedError(
            f"connection {self.local_address} -> {self.peer_address} was closed by {who}{reason}"
        )
        err.__cause__ = self._close_exc
        return err

    # ---------------------------------------------------------------- receive

    def set_handler(self, on_message: MessageHandler, on_close: CloseHandler) -> None:
        """Switch to callback mode; messages queued so far are delivered now, in order.

        ``on_message(msg)`` then runs synchronously from the loop for each message;
        its exceptions are logged, not fatal. ``on_close(exc)`` runs exactly once when
        the connection ends (right away if it already has): ``exc`` is None for a
        clean close by either side, else the cause (FrameError, an OSError...).
        """
        if self._recv_waiters:
            raise RuntimeError("set_handler() called while a recv() is pending")
        self._on_message = on_message
        self._on_close = on_close
        inbox = self._inbox
        user_closed = self._user_closed
        # Stop if the handler closes us or installs another handler (which drained the rest).
        while inbox and self._on_message is on_message and self._user_closed == user_closed:
            self._call_handler(on_message, inbox.popleft())
        if self._lost:
            self._report_close()

    async def recv(self) -> Any:
        """Pull mode: the next message; CommClosedError once closed and drained."""
        if self._on_message is not None:
            raise RuntimeError("recv() is not available once set_handler() was called")
        while not self._inbox:
            if self._closing:
                raise self._closed_error()
            waiter = self._loop.create_future()
            self._recv_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._recv_waiters:
                    self._recv_waiters.remove(waiter)
        return self._inbox.popleft()

    def _call_handler(self, on_message: MessageHandler, msg: Any) -> None:
        try:
            on_message(msg)
        except Exception:
            logger.exception("on_message handler for %s raised; message dropped", self.peer_address)

    def _data_received(self, data: bytes | bytearray) -> None:
        if self._closing:
            return
        decoder = self._decoder
        messages = decoder.feed(data)
        if self._on_message is not None:
            for msg in messages:
                if self._closing:  # a handler closed us: deliver nothing more
                    return
                try:
                    self._on_message(msg)
                except Exception:
                    # A buggy handler must not take the connection down with it.
                    logger.exception(
                        "on_message handler for %s raised; message dropped", self.peer_address
                    )
        elif messages:
            self._inbox.extend(messages)
            self._wake_recv_waiters()
        if decoder.error is not None:
            self._fail(decoder.error)

    def _fail(self, exc: FrameError) -> None:
        """Drop the connection because the peer sent something we refuse.

        Replies already queued to its earlier, valid messages still go out; the
        transport stops reading at once, so nothing more from the peer is parsed.
        """
        if self._closing:
            return
        logger.warning("dropping connection from %s: %s", self.peer_address, exc)
        self._close_exc = exc
        self._closed_by = "us"
        self._closing = True
        self._flush()
        self._transport.close()
        self._wake_recv_waiters()

    # ------------------------------------------------------------------- send

    def send(self, msg: Any) -> None:
        """Encode ``msg`` now and queue it; queued frames leave together on the next loop tick."""
        if self._closing:
            raise self._closed_error()
        header, body = self._encoder.encode(msg)
        wbuf = self._wbuf
        wbuf.append(header)
        wbuf.append(body)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        wbuf = self._wbuf
        if not wbuf:
            return
        data = b"".join(wbuf)
        wbuf.clear()
        if not self._lost:
            self._transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self._closing:
            raise self._closed_error()
        self._flush()
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter
        if self._lost:
            raise self._closed_error()

    def _pause_writing(self) -> None:
        self._write_paused = True

    def _resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Flush pending frames, then close. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._user_closed = True
        self._closed_by = "us"
        self._flush()
        if not self._lost:
            self._transport.close()
        self._wake_recv_waiters()

    async def aclose(self) -> None:
        """Close and wait until the transport is gone."""
        self.close()
        await asyncio.shield(self._closed_fut)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def detach(self, protocol: asyncio.BaseProtocol) -> Any:
        """Hand the authenticated byte stream over to ``protocol`` (e.g. raw bytes after a framed
        request): frames queued so far are flushed first; then the transport is ``protocol``'s
        (set now, its ``connection_made`` is not called) and this connection reads as closed,
        sends nothing and delivers nothing (no ``on_close``). Returns the transport, for the
        caller to close. RuntimeError if received bytes are still undelivered: they were meant
        for frames, not for ``protocol``."""
        if self._closing:
            raise self._closed_error()
        if self._inbox or self._decoder.buffered:
            raise RuntimeError("detach() with received messages or bytes not yet delivered")
        self._flush()
        self._closing = self._user_closed = self._lost = True
        self._closed_by = "us (detached)"
        self._on_message = self._on_close = None
        self._transport.set_protocol(protocol)
        self._wake_recv_waiters()
        self._wake_drainers()
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)
        return self._transport

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The transport is gone (called exactly once by the protocol)."""
        if self._lost:
            return
        self._lost = True
        if not self._closing:
            self._closing = True
            self._closed_by = "peer"
        if self._close_exc is None:
            self._close_exc = exc
        self._wbuf.clear()
        self._wake_recv_waiters()
        self._wake_drainers()
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)
        if self._on_close is not None:
            self._report_close()

    def _wake_recv_waiters(self) -> None:
        while self._recv_waiters:
            waiter = self._recv_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _report_close(self) -> None:
        if self._close_reported or self._on_close is None:
            return
        self._close_reported = True
        try:
            self._on_close(self._close_exc)
        except Exception:
            logger.exception("on_close handler for %s raised", self.peer_address)
