"""Anonymous shared memory, and the file descriptors of a store's segments.

A segment is a memfd (``memfd_create``): memory with no name in any file system, that lives
exactly as long as some process holds an fd or a mapping of it. The node's store creates every
segment and keeps its fd; processes that map one get their own fd over the store's unix socket
(segment_socket.py). So when every process using a segment ends -- however it ends, SIGKILL
included -- the kernel frees the memory, and nothing is left in /dev/shm. Where memfd is missing,
a file in /dev/shm created and unlinked at once stands in for it (the same lifetime).

``SegmentTable`` is the store's name -> fd map, shared by its loop thread (which creates and drops
segments) and its socket's thread (which hands fds out): an fd is only ever duplicated or sent
under the table's lock, so a segment dropped meanwhile is never confused with a newer fd that got
its number. It also keeps who was handed which segment, so that they can be told to let go of
their copies when the store drops it (their fds would otherwise keep its memory alive).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable

from actorflow._private.node.shm import SHM_ROOT


def memfd_available() -> bool:
    return hasattr(os, "memfd_create")


def anonymous_memory(name: str, size: int) -> int:
    """A new anonymous shared-memory file of size bytes: its fd, read-write, close-on-exec."""
    fd = _memfd(name) if memfd_available() else -1
    if fd < 0:
        fd = unlinked_file()
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _memfd(name: str) -> int:
    try:
        # The name shows in /proc/PID/fd and /proc/PID/maps ("/memfd:actorflow:..."), for tools.
        return os.memfd_create(f"actorflow:{name}"[:249], os.MFD_CLOEXEC)
    except OSError:  # ENOSYS under some sandboxes: fall back
        return -1


def unlinked_file() -> int:
    """A file in /dev/shm (else the temp dir) that no name points to: O_TMPFILE, or created
    and unlinked at once."""
    directory = SHM_ROOT if os.path.isdir(SHM_ROOT) else tempfile.gettempdir()
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:
            return os.open(directory, tmpfile | os.O_RDWR, 0o600)
        except OSError:
            pass  # a file system without O_TMPFILE
    fd, path = tempfile.mkstemp(prefix="actorflow-anon-", dir=directory)
    os.unlink(path)
    return fd


class SegmentTable:
    """The fds of one store's segments, by name, and who holds copies of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self._holders: dict[str, set[str]] = {}  # name -> processes handed an fd of it
        self._given: dict[str, str] = {}  # segments a writer handed in, not adopted yet -> writer
        self._closed = False

    def create(self, name: str, size: int) -> None:
        """A new segment of size bytes (OSError if the memory cannot be had)."""
        fd = anonymous_memory(name, size)
        self._put(name, fd)

    def give(self, name: str, fd: int, writer: str) -> None:
        """A segment a writer made itself (the table takes fd over); ``adopted`` follows."""
        self._put(name, fd)
        with self._lock:
            self._given[name] = writer

    def _put(self, name: str, fd: int) -> None:
        with self._lock:
            if self._closed:
                os.close(fd)
                raise OSError("the object store is shutting down")
            old = self._fds.pop(name, None)
            self._fds[name] = fd
        if old is not None:
            os.close(old)

    def adopted(self, name: str) -> bool:
        """The store took over a given segment; False if it is not here (its writer's fd
        never arrived, or its writer is gone and it was dropped)."""
        with self._lock:
            self._given.pop(name, None)
            return name in self._fds

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._fds

    def __len__(self) -> int:
        with self._lock:
            return len(self._fds)

    def nbytes(self) -> int:
        """The size of every segment the store holds (what it keeps alive by itself)."""
        with self._lock:
            return sum(os.fstat(fd).st_size for fd in self._fds.values())

    def open(self, name: str, holder: str = "") -> int | None:
        """A new fd of the segment, for the caller to close; None if there is no such segment.
        A holder ("" for the store itself) is told when the segment goes."""
        with self._lock:
            fd = self._fds.get(name)
            if fd is None:
                return None
            if holder:
                self._holders.setdefault(name, set()).add(holder)
            return os.dup(fd)

    def send(self, name: str, holder: str, send: Callable[[int | None], None]) -> None:
        """send(fd) (None: no such segment) with the table locked, so that fd stays this
        segment's while the kernel copies it to the peer."""
        with self._lock:
            fd = self._fds.get(name)
            if fd is not None and holder:
                self._holders.setdefault(name, set()).add(holder)
            send(fd)

    def drop(self, names: Iterable[str]) -> dict[str, list[str]]:
        """Close the store's fds of these segments; returns holder -> the names it was handed,
        to be told (its copies keep the memory alive until it closes them)."""
        tell: dict[str, list[str]] = {}
        closing = []
        with self._lock:
            for name in names:
                fd = self._fds.pop(name, None)
                self._given.pop(name, None)
                if fd is not None:
                    closing.append(fd)
                for holder in self._holders.pop(name, ()):
                    tell.setdefault(holder, []).append(name)
        for fd in closing:
            os.close(fd)
        return tell

    def holder_gone(self, holder: str) -> list[str]:
        """holder's process ended (its fds went with it). Returns the segments it had handed
        in and the store never adopted, for the caller to drop."""
        with self._lock:
            for holders in self._holders.values():
                holders.discard(holder)
            return [name for name, writer in self._given.items() if writer == holder]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fds = list(self._fds.values())
            self._fds.clear()
            self._holders.clear()
            self._given.clear()
        for fd in fds:
            os.close(fd)
