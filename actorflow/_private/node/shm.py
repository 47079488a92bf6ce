"""The layout of an object inside a shared-memory segment, and mapping one to read it.

A segment is anonymous shared memory (a memfd, see segments.py) that processes on the node map
through fds the store hands them (segment_socket.py). An object in a segment
is laid out as a 64-byte header (magic and object id, so a reader can tell it found the right
object), the pickle stream, then each out-of-band buffer, every part starting at a multiple of
64 bytes so that numpy arrays read from it are aligned; large buffers start on a page, which
also keeps memcpy at full speed (a destination a few bytes ahead of its source modulo 4 KiB
makes the copy three times slower on x86). A spilled object is the same bytes in a
file on disk, so one reader serves both.

Readers map read-only: arrays they get are read-only views, as in Ray, and nothing is copied.
"""

from __future__ import annotations

import glob
import mmap
import os
import pickle
import sys
from typing import Any

SHM_ROOT = "/dev/shm"
HEADER_BYTES = 64
ALIGN = 64
PAGE = 4096
_PAGE_ALIGNED_FROM = 1 << 20
_MAGIC = b"AFOBJ\x00\x01\x00"


def _aligned(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def layout(data_len: int, buffer_lens: list[int]) -> tuple[list[int], int]:
    """Offsets of the pickle stream and of each buffer, and the total size."""
    offsets = [HEADER_BYTES]
    end = HEADER_BYTES + data_len
    for length in buffer_lens:
        start = _aligned(end, PAGE if length >= _PAGE_ALIGNED_FROM else ALIGN)
        offsets.append(start)
        end = start + length
    return offsets, end


def header(obj_id: bytes) -> bytes:
    return (_MAGIC + obj_id).ljust(HEADER_BYTES, b"\x00")


def segment_prefix(node: str) -> str:
    """The prefix of the names of one node's segments (names, not paths: segments are in no
    file system)."""
    return f"{node}:"


def write_parts(
    fd_or_map: Any, obj_id: bytes, data: Any, buffers: list, offsets: list[int]
) -> None:
    """Write an object's parts at their offsets: into an mmap (slice assignment) or an fd."""
    parts = [header(obj_id), data, *buffers]
    places = [0, *offsets]
    if isinstance(fd_or_map, mmap.mmap):
        for place, part in zip(places, parts, strict=True):
            view = memoryview(part).cast("B")
            fd_or_map[place : place + view.nbytes] = view
            view.release()
        return
    for place, part in zip(places, parts, strict=True):
        view = memoryview(part).cast("B")
        written = 0
        while written < view.nbytes:  # pwrite may write less than asked for huge buffers
            written += os.pwrite(fd_or_map, view[written : written + (1 << 30)], place + written)
        view.release()


# From Python 3.13 a read-only mapping need not keep a duplicate of its fd (it is only used by
# size() and resize(), which we never call): a process can then map as many objects as it likes.
_NO_FD_COPY: dict = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def map_fd(fd: int, obj_id: bytes) -> mmap.mmap | None:
    """Map fd read-only (the caller closes fd), after checking that it holds obj_id; None if
    it holds another object (a segment reused: this one is gone)."""
    mapping = mmap.mmap(fd, 0, prot=mmap.PROT_READ, **_NO_FD_COPY)
    if mapping[: len(_MAGIC) + len(obj_id)] != _MAGIC + obj_id:
        mapping.close()
        return None
    return mapping


def map_file(path: str, obj_id: bytes) -> mmap.mmap | None:
    """map_fd of the file at path (a spilled object); None if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return map_fd(fd, obj_id)
    finally:
        os.close(fd)


def views(mapping: mmap.mmap, data_len: int, buffer_lens: list[int]) -> tuple[memoryview, list]:
    """The pickle stream and the out-of-band buffers, as views onto the mapping."""
    whole = memoryview(mapping)
    offsets, _ = layout(data_len, buffer_lens)
    data = whole[offsets[0] : offsets[0] + data_len]
    buffers = [
        whole[start : start + length]
        for start, length in zip(offsets[1:], buffer_lens, strict=True)
    ]
    whole.release()
    return data, buffers


def loads(mapping: mmap.mmap, data_len: int, buffer_lens: list[int]) -> Any:
    data, buffers = views(mapping, data_len, buffer_lens)
    try:
        return pickle.loads(data, buffers=buffers)
    finally:
        data.release()  # the buffers stay: values read from them keep them alive


def remove_stale_segments(keep_pid: int) -> int:
    """Unlink segment files of older versions' stores whose process is gone (they kept
    segments as named files in /dev/shm, which outlived a node killed with SIGKILL; today's
    segments die with their processes). Returns how many were removed."""
    removed = 0
    for path in glob.glob(os.path.join(SHM_ROOT, "actorflow-*-*")):
        try:
            pid = int(os.path.basename(path).split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid == keep_pid or _alive(pid):
            continue
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True
