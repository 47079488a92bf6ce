"""Exception hierarchy of the wire layer.

Everything raised on purpose derives from TransportError so callers can catch
the whole family; the OS-level cause is kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CommClosedError",
    "ConnectError",
    "FrameError",
    "FrameTooLargeError",
    "TLSError",
    "TransportError",
]


class TransportError(Exception):
    """Root of every error raised by this package."""


class CommClosedError(TransportError):
    """The connection is closed (the message says whether by us or by the peer)."""


class ConnectError(TransportError, OSError):
    """Could not establish a connection (refused, unreachable, timed out, not our protocol).

    Also an OSError so code that treats network failures generically catches it;
    the underlying OSError, if any, is the ``__cause__``.
    """


class AuthenticationError(TransportError):
    """The cluster-token handshake failed.

    Deliberately not a ConnectError: retry loops around ConnectError should not
    spin on a wrong token.
    """


class TLSError(AuthenticationError):
    """TLS refused the connection: one side speaks TLS and the other not, or a certificate is
    not the cluster's, has expired, or is missing. The message names which."""


class FrameError(TransportError):
    """A received frame could not be decoded."""


class FrameTooLargeError(FrameError):
    """A frame exceeds max_frame_size (sent or announced by the peer)."""
