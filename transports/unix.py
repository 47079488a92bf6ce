"""Unix-domain socket backend: ``unix:///absolute/path``."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import ssl
import stat

from .address import parse_address
from .backend import open_stream
from .connection import Connection
from .listener import Acceptor, Listener, OnConnection

__all__ = ["UnixBackend"]


def _path(address: str) -> str:
    scheme, path = parse_address(address)
    if scheme != "unix":
        raise ValueError(f"not a unix address: {address!r}")
    if not path.startswith("/"):
        raise ValueError(
            f"unix address needs an absolute path, e.g. 'unix:///tmp/x.sock', got {address!r}"
        )
    return path


def _clear_stale_socket(path: str, address: str) -> None:
    """Remove a socket file left by a dead process; refuse to clobber a live one or a non-socket."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # nobody is accepting: stale
        return
    except OSError:
        return  # can't tell; let bind report the real error
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{address} is in use by a live listener")


class UnixBackend:
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
        path = _path(address)
        _clear_stale_socket(path, address)
        loop = asyncio.get_running_loop()
        acceptor = Acceptor(
            loop,
            on_connection,
            token=token,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
        )
        local = f"unix://{path}"
        counter = itertools.count(1)

        def describe(transport: asyncio.BaseTransport) -> tuple[str, str]:
            # Client unix sockets are unnamed; number them so logs can tell them apart.
            return local, f"unix://{path}#client-{next(counter)}"

        server = await loop.create_unix_server(lambda: acceptor.protocol(describe), path)
        inode = os.stat(path).st_ino

        def close() -> None:
            server.close()
            acceptor.close()
            # Only unlink the file if it is still ours (another listener may have replaced it).
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass

        return Listener(local, close)

    async def connect(
        self,
        address: str,
        *,
        token: bytes,
        timeout: float,
        max_frame_size: int,
        tls: ssl.SSLContext | None = None,  # same machine only: no TLS needed
    ) -> Connection:
        path = _path(address)
        loop = asyncio.get_running_loop()

        def describe(transport: asyncio.BaseTransport) -> tuple[str, str]:
            return f"unix://{path}#client-pid{os.getpid()}", f"unix://{path}"

        return await open_stream(
            address,
            lambda factory: loop.create_unix_connection(factory, path),
            describe,
            token=token,
            timeout=timeout,
            max_frame_size=max_frame_size,
        )
