"""Backend registry: the address scheme picks the implementation."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

from .address import parse_address
from .connection import Connection
from .errors import AuthenticationError, CommClosedError, ConnectError
from .framing import DEFAULT_MAX_FRAME_SIZE
from .listener import Listener, OnConnection
from .stream import Describe, StreamProtocol

__all__ = ["Backend", "connect", "get_backend", "listen", "open_stream", "register_backend"]


class Backend(Protocol):
    """What a transport implementation provides. Both methods get the full address.

    ``tls`` (a server context for listen, a client one for connect) is for backends whose
    traffic leaves the machine (tcp); local ones (unix, inproc) never do, and ignore it."""

    async def listen(
        self,
        address: str,
        on_connection: OnConnection,
        *,
        token: bytes,
        max_frame_size: int,
        handshake_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> Listener: ...

    async def connect(
        self,
        address: str,
        *,
        token: bytes,
        timeout: float,
        max_frame_size: int,
        tls: ssl.SSLContext | None = None,
    ) -> Connection: ...


_backends: dict[str, Backend] = {}


def register_backend(scheme: str, backend: Backend) -> None:
    """Make ``scheme://...`` addresses use ``backend`` (replaces any previous one)."""
    if not scheme or not scheme.isascii() or not scheme.isalnum():
        raise ValueError(f"invalid scheme {scheme!r}")
    _backends[scheme.lower()] = backend


def get_backend(address: str) -> Backend:
    scheme, _ = parse_address(address)
    try:
        return _backends[scheme]
    except KeyError:
        known = ", ".join(sorted(_backends)) or "none"
        raise ValueError(
            f"no transport backend for scheme {scheme!r} in {address!r} (known: {known})"
        ) from None


def _check_token(token: bytes) -> None:
    if not isinstance(token, (bytes, bytearray)) or not token:
        raise TypeError("token must be non-empty bytes (the cluster token)")


async def listen(
    address: str,
    on_connection: OnConnection,
    *,
    token: bytes,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    handshake_timeout: float = 5.0,
    tls: ssl.SSLContext | None = None,
) -> Listener:
    """Serve ``address``; ``on_connection(conn)`` runs for each authenticated connection.

    With ``tls`` (a server context, see tls.py) a tcp:// listener speaks TLS only: the token
    handshake and every frame run inside it, and plaintext clients are refused.

    ``on_connection`` may be a plain function or return an awaitable (run as a task);
    if it raises, the error is logged and that connection closed. Clients that do
    not complete the handshake within ``handshake_timeout`` seconds are dropped.
    The returned Listener's ``address`` is the real bound address (port 0 resolved).
    """
    _check_token(token)
    return await get_backend(address).listen(
        address,
        on_connection,
        token=bytes(token),
        max_frame_size=max_frame_size,
        handshake_timeout=handshake_timeout,
        tls=tls,
    )


async def connect(
    address: str,
    *,
    token: bytes,
    timeout: float = 10.0,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    tls: ssl.SSLContext | None = None,
) -> Connection:
    """Open an authenticated connection to ``address`` (over TLS with a client context).

    Raises AuthenticationError on a token mismatch (either direction), TLSError (one) when
    TLS refuses the connection, ConnectError (with the address in the message) on any other
    failure, including timeout.
    """
    _check_token(token)
    return await get_backend(address).connect(
        address, token=bytes(token), timeout=timeout, max_frame_size=max_frame_size, tls=tls
    )


CreateTransport = Callable[
    [Callable[[], StreamProtocol]], Awaitable[tuple[asyncio.BaseTransport, StreamProtocol]]
]


async def open_stream(
    address: str,
    create: CreateTransport,
    describe: Describe,
    *,
    token: bytes,
    timeout: float,
    max_frame_size: int,
    tls: ssl.SSLContext | None = None,
) -> Connection:
    """Client side for socket-like backends: connect, (start TLS,) authenticate, map errors."""
    loop = asyncio.get_running_loop()

    def factory() -> StreamProtocol:
        return StreamProtocol(loop, token=token, max_frame_size=max_frame_size, describe=describe)

    async def attempt() -> Connection:
        transport, proto = await create(factory)
        try:
            if tls is not None:
                await proto.client_tls(tls, address, timeout)
            return await proto.client_handshake(address)
        except BaseException:
            (proto.transport or transport).abort()  # type: ignore[attr-defined]
            raise

    try:
        return await asyncio.wait_for(attempt(), timeout)
    except (AuthenticationError, ConnectError):
        raise
    except asyncio.TimeoutError:
        raise ConnectError(f"timed out after {timeout:g}s connecting to {address}") from None
    except CommClosedError as exc:
        raise ConnectError(f"{address} closed the connection during the handshake") from exc
    except OSError as exc:
        raise ConnectError(f"cannot connect to {address}: {exc}") from exc
