"""Packages in the GCS's key-value store, in pieces: uploaded by drivers, fetched by nodes.

As in Ray, a package lives in the GCS (so a node can fetch it while its driver is busy, and an
actor restarted on another node finds it). It is stored as chunks of ``runtime_env_chunk_bytes``
under ``<hash>:<i>`` and a manifest under ``<hash>`` written last, so no frame carries a whole
package and a manifest means the package is complete. The fetched bytes are checked against the
hash in the package's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs published

from actorflow._private import errors
from actorflow._private.protocol.gcs import KvGet, KvPut
from actorflow._private.runtime_env.packaging import package_hash

NAMESPACE = "runtime_env_packages"

Ask = Callable[[Any], Awaitable[Any]]  # sends a GCS message, returns its answer


async def has(ask: Ask, uri: str) -> bool:
    return await ask(KvGet(NAMESPACE, package_hash(uri).encode())) is not None


async def upload(ask: Ask, uri: str, data: bytes, chunk_bytes: int) -> None:
    """Store the package unless the GCS has it already."""
    if await has(ask, uri):
        return
    digest = package_hash(uri)
    chunks = max(1, -(-len(data) // chunk_bytes))
    for i in range(chunks):
        piece = data[i * chunk_bytes : (i + 1) * chunk_bytes]
        await ask(KvPut(NAMESPACE, f"{digest}:{i}".encode(), piece, True))
    manifest = msgpack.packb({"size": len(data), "chunks": chunks})
    await ask(KvPut(NAMESPACE, digest.encode(), manifest, True))


async def fetch(ask: Ask, uri: str) -> bytes:
    """The package's bytes; RuntimeEnvSetupError if the GCS does not have it (whole)."""
    digest = package_hash(uri)
    raw = await ask(KvGet(NAMESPACE, digest.encode()))
    if raw is None:
        raise errors.RuntimeEnvSetupError(
            f"package {uri} is not in the cluster's GCS (it was never uploaded, or the GCS "
            f"lost it); pass a local path in runtime_env and it is uploaded"
        )
    manifest = msgpack.unpackb(raw)
    parts = []
    for i in range(int(manifest["chunks"])):
        piece = await ask(KvGet(NAMESPACE, f"{digest}:{i}".encode()))
        if piece is None:
            raise errors.RuntimeEnvSetupError(f"package {uri}: piece {i} is missing in the GCS")
        parts.append(piece)
    data = b"".join(parts)
    if hashlib.sha1(data).hexdigest() != digest:
        raise errors.RuntimeEnvSetupError(f"package {uri}: its content does not match its hash")
    return data
