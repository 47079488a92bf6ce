"""How a joining node or driver gets its TLS certificate with nothing but the cluster token.

The joiner makes a key of its own (it never leaves the joiner) and a certificate request, and
opens a TLS connection to the GCS without a certificate: the GCS's port accepts that (all other
ports require one), runs the token handshake inside TLS as always, and then serves such a
connection only this one exchange before closing it:

    joiner -> GCS  {"enroll": {"nonce": 32 random bytes, "csr": PEM, "mac": HMAC(token, ...)}}
    GCS -> joiner  {"cert": PEM, "ca": PEM, "mac": HMAC(token, nonce, csr, cert, ca)}

The joiner cannot check the GCS's certificate yet (it has no CA), so each message carries an
HMAC on the token over its content: a man in the middle without the token can neither get a
certificate for a key of its own (the request MAC) nor hand the joiner a CA of its own (the
answer MAC, bound to the joiner's fresh nonce and request). Keys, CSRs and certificates are
public; the token is the only secret a joiner needs, and is never sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import shutil
import socket
import tempfile
from typing import Any

import transports
from actorflow._private import errors
from actorflow._private.cluster import pki
from actorflow._private.config import Config
from transports import Connection, TLSConfig

logger = logging.getLogger("actorflow.enrollment")

NONCE_SIZE = 32
MAX_CSR_BYTES = 16 * 1024
SERVE_SECONDS = 10.0


def _mac(token: bytes, label: bytes, *parts: bytes) -> bytes:
    # Length-prefixed, so no two different field sequences MAC the same.
    digest = hmac.new(token, label, hashlib.sha256)
    for part in parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.digest()


class EnrollmentService:
    """The GCS's side: signs the requests of token holders with the cluster CA."""

    def __init__(self, token: bytes, tls_dir: str) -> None:
        self._token = token
        self._ca_key, self._ca_cert = pki.read_ca(tls_dir)

    def sign(self, request: Any) -> dict[str, bytes]:
        """The answer to one request; ValueError naming what is wrong with it."""
        if not isinstance(request, dict) or not isinstance(request.get("enroll"), dict):
            raise ValueError("expected an enrollment request {'enroll': {...}}")
        body = request["enroll"]
        nonce, csr, mac = body.get("nonce"), body.get("csr"), body.get("mac")
        if not (isinstance(nonce, bytes) and len(nonce) == NONCE_SIZE):
            raise ValueError("bad nonce")
        if not (isinstance(csr, bytes) and 0 < len(csr) <= MAX_CSR_BYTES):
            raise ValueError("bad certificate request")
        if not (
            isinstance(mac, bytes)
            and hmac.compare_digest(mac, _mac(self._token, b"req", nonce, csr))
        ):
            raise ValueError("the request's MAC does not match the cluster token")
        cert = pki.sign_csr(self._ca_key, self._ca_cert, csr)
        return {
            "cert": cert,
            "ca": self._ca_cert,
            "mac": _mac(self._token, b"resp", nonce, csr, cert, self._ca_cert),
        }

    async def serve(self, conn: Connection) -> None:
        """One request on a connection without a certificate, then close it."""
        try:
            request = await asyncio.wait_for(conn.recv(), SERVE_SECONDS)
            conn.send(self.sign(request))
            await conn.drain()
            logger.info("issued a TLS certificate to %s", conn.peer_address)
        except Exception as exc:
            logger.warning("refused to enroll %s: %s", conn.peer_address, exc)
        finally:
            conn.close()


async def enroll(
    gcs_address: str, token: bytes, timeout: float, name: str = ""
) -> tuple[bytes, bytes, bytes]:
    """(key, certificate, CA certificate) PEMs for this process, issued by the GCS."""
    key = pki.new_key()
    csr = pki.new_csr(key, name or f"{socket.gethostname()} pid {os.getpid()}")
    nonce = os.urandom(NONCE_SIZE)
    try:
        conn = await transports.connect(
            gcs_address, token=token, timeout=timeout, tls=transports.client_context()
        )
    except transports.AuthenticationError as exc:  # a wrong token, or a GCS without TLS
        raise errors.AuthenticationError(f"no TLS certificate from {gcs_address}: {exc}") from None
    try:
        conn.send({"enroll": {"nonce": nonce, "csr": csr, "mac": _mac(token, b"req", nonce, csr)}})
        try:
            answer = await asyncio.wait_for(conn.recv(), timeout)
        except transports.CommClosedError:
            raise errors.AuthenticationError(
                f"{gcs_address} issued no TLS certificate (its log says why)"
            ) from None
    finally:
        conn.close()
    cert, ca, mac = (
        answer.get(k) if isinstance(answer, dict) else None for k in ("cert", "ca", "mac")
    )
    if not (isinstance(cert, bytes) and isinstance(ca, bytes) and isinstance(mac, bytes)):
        raise errors.AuthenticationError(f"{gcs_address} sent a malformed enrollment answer")
    if not hmac.compare_digest(mac, _mac(token, b"resp", nonce, csr, cert, ca)):
        raise errors.AuthenticationError(
            f"{gcs_address}: the certificate answer is not MACed with the cluster token "
            "(someone on the path?)"
        )
    pki.check_member(key, cert, ca)
    return key, cert, ca


def config_from_pems(key: bytes, cert: bytes, ca: bytes) -> TLSConfig:
    """TLS contexts for a member whose key is only in memory (ssl loads from files only: they
    are written to a private directory and removed once loaded)."""
    directory = tempfile.mkdtemp(prefix="actorflow-tls-")
    try:
        pki.write_member(directory, key, cert, ca)
        return TLSConfig.from_dir(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def session_tls_dir(session: str | None) -> str | None:
    """The TLS directory of a session on this machine, if it runs with TLS."""
    if not session:
        return None
    directory = os.path.join(session, pki.TLS_DIR)
    return directory if os.path.isdir(directory) else None


async def client_tls(
    gcs_address: str, token: bytes, session: str | None, config: Config, name: str = ""
) -> TLSConfig | None:
    """The TLS of a driver or tool of the cluster at gcs_address: its session's certificate
    when the cluster runs on this machine with TLS, else (ACTORFLOW_TLS) one issued by the GCS,
    else None (plaintext)."""
    directory = session_tls_dir(session)
    if directory is not None:
        return TLSConfig.from_dir(directory)
    if not config.tls:
        return None
    key, cert, ca = await enroll(gcs_address, token, config.connect_timeout, name)
    return config_from_pems(key, cert, ca)
