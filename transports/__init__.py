"""actorflow's wire: authenticated, length-prefixed msgpack messages over tcp, unix or inproc.

Independent of actorflow itself. Typical use::

    listener = await listen("tcp://127.0.0.1:0", on_connection, token=TOKEN)
    conn = await connect(listener.address, token=TOKEN)
    conn.set_handler(on_message, on_close)
    conn.send({"op": "ping"})
"""

from __future__ import annotations

from .address import parse_address
from .backend import Backend, connect, listen, register_backend
from .connection import Connection
from .errors import (
    AuthenticationError,
    CommClosedError,
    ConnectError,
    FrameError,
    FrameTooLargeError,
    TLSError,
    TransportError,
)
from .framing import DEFAULT_MAX_FRAME_SIZE
from .inproc import InprocBackend
from .listener import Listener
from .tcp import TCPBackend
from .tls import TLSConfig, client_context, server_context
from .unix import UnixBackend

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "AuthenticationError",
    "Backend",
    "CommClosedError",
    "ConnectError",
    "Connection",
    "FrameError",
    "FrameTooLargeError",
    "Listener",
    "TLSConfig",
    "TLSError",
    "TransportError",
    "client_context",
    "connect",
    "listen",
    "parse_address",
    "register_backend",
    "server_context",
]

register_backend("tcp", TCPBackend())
register_backend("unix", UnixBackend())
register_backend("inproc", InprocBackend())
