"""TLS for tcp:// connections: contexts from PEM files, the plaintext preamble, clear errors.

A TLS listener first sends a fixed plaintext preamble, shaped like the token handshake's
server hello but with ``TLS_MARKER`` in place of the version byte, then starts TLS. A TLS client
reads it before starting TLS; a plaintext client reads it as a server hello and fails at once
with "this port requires TLS" instead of both sides waiting for the other to speak first. The
token handshake (auth.py) then runs inside TLS, so no frame is decoded before both have passed.

Trust is one cluster CA: each side must present a certificate signed by it (mutual TLS, TLS
1.3 only). Peers are addressed by IP and every member holds a CA-signed certificate, so host
names are not checked: membership, not a name, is what a certificate proves here.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass

from .auth import MAGIC, NONCE_SIZE, TLS_MARKER
from .errors import TLSError

__all__ = [
    "PREAMBLE",
    "TLS_MARKER",
    "TLSConfig",
    "client_context",
    "describe_tls_error",
    "server_context",
]

PREAMBLE = MAGIC + bytes([TLS_MARKER]) + bytes(NONCE_SIZE)  # as long as a server hello

CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"


def server_context(
    cert: str, key: str, ca: str, *, require_client_cert: bool = True
) -> ssl.SSLContext:
    """A listener's context: our certificate, and peers' checked against the cluster CA.
    Without require_client_cert a peer may present none (it must still pass the token
    handshake); one it does present must be valid."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


class ClientContext(ssl.SSLContext):
    """A client context that can tell why a server would refuse its certificate: in TLS 1.3 a
    server checks the client's certificate after the client's handshake is done, and asyncio
    closes without sending the alert, so the client learns only that the server hung up."""

    own: ssl.SSLContext | None = None  # presents our certificate, for own_certificate_problem


def client_context(
    cert: str | None = None, key: str | None = None, ca: str | None = None
) -> ssl.SSLContext:
    """A connecting side's context. Without ca the server's certificate is not checked: only
    for a bootstrap exchange whose messages are authenticated on their own."""
    ctx = ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # see the module docstring: the CA is the trust, not names
    if ca is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
        own = ctx.own = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        own.minimum_version = ssl.TLSVersion.TLSv1_3
        own.load_cert_chain(cert, key)
    return ctx


def own_certificate_problem(ctx: ssl.SSLContext) -> str | None:
    """What is wrong with the certificate ctx presents, checked against ctx's own CA by a
    handshake in memory (OpenSSL's verdict, as a server would give it); None: nothing."""
    own = getattr(ctx, "own", None)
    if own is None or ctx.verify_mode == ssl.CERT_NONE:
        return None
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = ctx.wrap_bio(bios[0], bios[1], server_side=False)
    server = own.wrap_bio(bios[2], bios[3], server_side=True)
    for _ in range(8):
        try:
            client.do_handshake()
            return None
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            return describe_tls_error(exc, whose="our")
        try:
            server.do_handshake()
        except ssl.SSLError:
            pass  # the server half only has to answer
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())
    return None


@dataclass(frozen=True)
class TLSConfig:
    """One process's two contexts: for the connections it accepts and those it opens."""

    server: ssl.SSLContext
    client: ssl.SSLContext

    @classmethod
    def from_dir(cls, directory: str, *, require_client_cert: bool = True) -> TLSConfig:
        """From ``ca.pem``, ``cert.pem`` and ``key.pem`` in directory."""
        ca, cert, key = (os.path.join(directory, n) for n in (CA_FILE, CERT_FILE, KEY_FILE))
        for path in (ca, cert, key):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"TLS: {path} is missing (certificates of this node)")
        return cls(
            server_context(cert, key, ca, require_client_cert=require_client_cert),
            client_context(cert, key, ca),
        )


_CLOSED = (
    "the peer closed the connection during the TLS handshake (a client without TLS, or one "
    "that does not trust our certificate: of another cluster?)"
)
# OpenSSL's reasons, said in the words of what went wrong.
_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the peer refused our certificate: it is not signed by the peer's "
    "cluster CA (a certificate of another cluster?)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer refused our certificate: it has expired",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer requires a certificate and we sent none",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer sent no certificate",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS (a plaintext client?)",
    "HTTP_REQUEST": "the peer does not speak TLS (it sent an HTTP request)",
    "UNSUPPORTED_PROTOCOL": "the peer offers no TLS 1.3",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the peer offers no TLS 1.3",
    "UNEXPECTED_EOF_WHILE_READING": _CLOSED,
}
_X509_EXPIRED, _X509_NOT_YET_VALID = 10, 9
_X509_UNTRUSTED = {2, 18, 19, 20, 21}  # no issuer known, self-signed, chain not to our CA


def describe_tls_error(exc: BaseException, whose: str = "its") -> str:
    """What a TLS failure means, for a log line or an exception message; whose certificate
    failed the check ("its": the peer's)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _X509_EXPIRED:
            return f"{whose} certificate has expired"
        if code == _X509_NOT_YET_VALID:
            return f"{whose} certificate is not valid yet (clocks apart?)"
        if code in _X509_UNTRUSTED:
            return (
                f"{whose} certificate is not signed by this cluster's CA (a certificate of "
                f"another cluster?): {exc.verify_message}"
            )
        return f"{whose} certificate was refused: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or ""
        if reason in _REASONS:
            return _REASONS[reason]
        return f"TLS failed: {exc}"
    if isinstance(exc, (ConnectionError, EOFError)):
        return _CLOSED
    return f"TLS failed: {exc!r}"


async def start_tls(
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    ctx: ssl.SSLContext,
    *,
    server_side: bool,
    timeout: float,
) -> asyncio.Transport:
    """Upgrade transport in place; raises TLSError naming the problem."""
    loop = asyncio.get_running_loop()
    try:
        upgraded = await loop.start_tls(
            transport,  # type: ignore[arg-type]
            protocol,
            ctx,
            server_side=server_side,
            ssl_handshake_timeout=timeout,
        )
    except (ssl.SSLError, ConnectionError, EOFError) as exc:
        raise TLSError(describe_tls_error(exc)) from exc
    if upgraded is None:
        raise TLSError("the connection closed during the TLS handshake")
    return upgraded
