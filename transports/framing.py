"""Length-prefixed msgpack frames: 4-byte big-endian body length, then the body."""

from __future__ import annotations

import struct
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs published

from .errors import FrameError, FrameTooLargeError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "Encoder", "FrameDecoder"]

DEFAULT_MAX_FRAME_SIZE = 512 * 1024 * 1024
HEADER_SIZE = 4
_HEADER = struct.Struct(">I")
# Never let a peer-announced length above what the header can express through.
_MAX_EXPRESSIBLE = 2**32 - 1

# Below this many consumed bytes the receive buffer is not compacted: compaction
# is a memmove of the unconsumed tail, so do it rarely for small frames.
_COMPACT_THRESHOLD = 256 * 1024


def _check_max(max_frame_size: int) -> int:
    if not isinstance(max_frame_size, int) or not 0 < max_frame_size <= _MAX_EXPRESSIBLE:
        raise ValueError(f"max_frame_size must be an int in 1..{_MAX_EXPRESSIBLE}")
    return max_frame_size


class Encoder:
    """Turns a message into ``(header, body)``; one per connection (Packer is not reentrant)."""

    __slots__ = ("_pack", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = _check_max(max_frame_size)
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

    def encode(self, msg: Any) -> tuple[bytes, bytes]:
        try:
            body: bytes = self._pack(msg)
        except TypeError as exc:
            raise TypeError(f"cannot msgpack-encode message: {exc}") from exc
        except (OverflowError, ValueError) as exc:
            # e.g. ints beyond 64 bits: report them like any other unencodable value.
            raise TypeError(f"cannot msgpack-encode message: {exc}") from exc
        if len(body) > self.max_frame_size:
            raise FrameTooLargeError(
                f"encoded message is {len(body)} bytes, over max_frame_size={self.max_frame_size}"
            )
        return _HEADER.pack(len(body)), body


class FrameDecoder:
    """Accumulates bytes and cuts out complete frames.

    Bytes are appended to one bytearray and consumed through an offset, so a
    large frame arriving in many chunks costs amortised linear time; decoding
    reads through a memoryview so a complete frame is not copied before
    msgpack sees it.
    """

    __slots__ = ("_buf", "_pos", "error", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = _check_max(max_frame_size)
        self._buf = bytearray()
        self._pos = 0
        # Set once a bad frame is seen; the decoder then refuses further input.
        self.error: FrameError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Return the messages completed by ``data``, in order.

        On a bad frame, returns the messages decoded before it and sets
        ``self.error``; the caller must then drop the connection.
        """
        if self.error is not None:
            return []
        buf = self._buf
        buf += data
        pos = self._pos
        end_of_data = len(buf)
        out: list[Any] = []
        unpack_header = _HEADER.unpack_from
        limit = self.max_frame_size
        with memoryview(buf) as view:
            while end_of_data - pos >= HEADER_SIZE:
                (size,) = unpack_header(buf, pos)
                if size > limit:
                    self.error = FrameTooLargeError(
                        f"peer announced a {size}-byte frame, over max_frame_size={limit}"
                    )
                    break
                end = pos + HEADER_SIZE + size
                if end > end_of_data:
                    break
                try:
                    out.append(
                        msgpack.unpackb(
                            view[pos + HEADER_SIZE : end], raw=False, strict_map_key=False
                        )
                    )
                except Exception as exc:
                    self.error = FrameError(f"undecodable msgpack frame ({size} bytes): {exc!r}")
                    break
                pos = end
        if self.error is not None or pos == end_of_data:
            buf.clear()
            self._pos = 0
        elif pos > _COMPACT_THRESHOLD:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf) - self._pos
