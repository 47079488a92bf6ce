"""Mutual HMAC-SHA256 challenge-response on the cluster token.

Runs on raw fixed-size bytes before any frame is decoded: later payloads may
be cloudpickled, so an unauthenticated peer must never reach the decoder.
The token itself never crosses the wire; both sides prove knowledge of it by
MACing the other side's fresh nonce.

    server -> client  MAGIC VERSION nonce_s                       (37 bytes)
    client -> server  MAGIC VERSION nonce_c mac_c                 (69 bytes)
    server -> client  REJECT | REJECT_VERSION                     (1 byte, then close)
                   or ACCEPT mac_s                                (33 bytes)

    mac_c = HMAC(token, b"client" + nonce_s + nonce_c)
    mac_s = HMAC(token, b"server" + nonce_c + nonce_s)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable

from .errors import AuthenticationError, ConnectError, TLSError

__all__ = [
    "ACCEPT",
    "MAC_SIZE",
    "MAGIC",
    "NONCE_SIZE",
    "REJECT",
    "REJECT_VERSION",
    "SERVER_RECEIVE_LIMIT",
    "TLS_MARKER",
    "VERSION",
    "client_handshake",
    "client_mac",
    "server_handshake",
    "server_mac",
]

MAGIC = b"AFLW"
VERSION = 1
NONCE_SIZE = 32
MAC_SIZE = 32
ACCEPT = b"\x01"
REJECT = b"\x00"
REJECT_VERSION = b"\x02"
# In the version byte's place, the first bytes of a TLS port (tls.py): "speak TLS first".
TLS_MARKER = 0xF1

_PREAMBLE = MAGIC + bytes([VERSION])
_SERVER_HELLO_SIZE = len(_PREAMBLE) + NONCE_SIZE
_CLIENT_HELLO_SIZE = len(_PREAMBLE) + NONCE_SIZE + MAC_SIZE
# A client sends nothing but its hello until it has verified the server.
SERVER_RECEIVE_LIMIT = _CLIENT_HELLO_SIZE

ReadExactly = Callable[[int], Awaitable[bytes]]
Write = Callable[[bytes], None]


class HandshakeRejected(Exception):
    """Server side: the client must be dropped (``str`` says why, for the log)."""


def client_mac(token: bytes, nonce_s: bytes, nonce_c: bytes) -> bytes:
    return hmac.new(token, b"client" + nonce_s + nonce_c, hashlib.sha256).digest()


def server_mac(token: bytes, nonce_c: bytes, nonce_s: bytes) -> bytes:
    return hmac.new(token, b"server" + nonce_c + nonce_s, hashlib.sha256).digest()


def _check_token(token: bytes) -> bytes:
    if not isinstance(token, (bytes, bytearray)) or not token:
        raise TypeError("token must be non-empty bytes (the cluster token)")
    return bytes(token)


async def server_handshake(read_exactly: ReadExactly, write: Write, token: bytes) -> None:
    """Authenticate a client; raises HandshakeRejected if it must be dropped."""
    token = _check_token(token)
    nonce_s = os.urandom(NONCE_SIZE)
    write(_PREAMBLE + nonce_s)
    hello = await read_exactly(_CLIENT_HELLO_SIZE)
    if hello[: len(MAGIC)] != MAGIC:
        raise HandshakeRejected("bad magic (not an actorflow client)")
    if hello[len(MAGIC)] != VERSION:
        # Answer so a real client of another version gets a clear error.
        write(REJECT_VERSION)
        raise HandshakeRejected(f"unsupported protocol version {hello[len(MAGIC)]}")
    nonce_c = hello[len(_PREAMBLE) : len(_PREAMBLE) + NONCE_SIZE]
    mac_c = hello[len(_PREAMBLE) + NONCE_SIZE :]
    if not hmac.compare_digest(mac_c, client_mac(token, nonce_s, nonce_c)):
        write(REJECT)
        raise HandshakeRejected("wrong cluster token")
    write(ACCEPT + server_mac(token, nonce_c, nonce_s))


async def client_handshake(
    read_exactly: ReadExactly, write: Write, token: bytes, address: str
) -> None:
    """Authenticate to a server and verify its proof; ``address`` is for messages."""
    token = _check_token(token)
    hello = await read_exactly(_SERVER_HELLO_SIZE)
    if hello[: len(MAGIC)] != MAGIC:
        raise ConnectError(f"{address} is not an actorflow endpoint (bad handshake magic)")
    if hello[len(MAGIC)] == TLS_MARKER:
        write(_PREAMBLE)  # so that the server's TLS, too, sees plaintext and can say so
        raise TLSError(
            f"{address} requires TLS (its cluster was started with --tls) and this process "
            "connects without it: set ACTORFLOW_TLS=1 here"
        )
    if hello[len(MAGIC)] != VERSION:
        raise ConnectError(
            f"{address} speaks wire protocol version {hello[len(MAGIC)]}, we speak {VERSION}"
        )
    nonce_s = hello[len(_PREAMBLE) :]
    nonce_c = os.urandom(NONCE_SIZE)
    write(_PREAMBLE + nonce_c + client_mac(token, nonce_s, nonce_c))
    verdict = await read_exactly(1)
    if verdict == REJECT:
        raise AuthenticationError(f"{address} rejected our handshake: wrong cluster token")
    if verdict == REJECT_VERSION:
        raise ConnectError(f"{address} rejected our wire protocol version {VERSION}")
    if verdict != ACCEPT:
        raise ConnectError(f"{address} sent an invalid handshake verdict {verdict!r}")
    mac_s = await read_exactly(MAC_SIZE)
    if not hmac.compare_digest(mac_s, server_mac(token, nonce_c, nonce_s)):
        raise AuthenticationError(
            f"{address}: peer failed to prove it knows the cluster token "
            "(wrong cluster token on the server side?)"
        )
