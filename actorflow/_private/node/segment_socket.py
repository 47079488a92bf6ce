"""Segments' fds between a node's store and the processes that map them: a unix socket, fds
passed as SCM_RIGHTS.

The store's process serves a SOCK_SEQPACKET socket (one datagram per message, in order) in its
node's session directory: 0700 directory, 0600 socket, and every connection's peer must run as
this user (SO_PEERCRED), or it is closed before a byte is read. A client says who it is once
(``H`` + its runtime address: the store tells that address when a segment it was handed goes),
then asks for segments by name (``G`` + name: answered ``y`` with the fd, or ``n`` when the
store no longer has it) and hands in segments it made itself (``P`` + name with the fd:
answered ``k`` once the store has it).

The server is one thread with a selector, off the store's event loop: a reader waiting for an
fd never waits for the store's loop, which may itself be waiting for that reader.

``SegmentClient`` is a process's side: it keeps the fds it received, by segment name (a bounded
number, least recently used dropped), so that mapping a segment again is one lookup; the store
tells it (``forget``) when a segment goes. A client in the store's own process (the embedded
cluster of ``init()``) takes fds from the table directly.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
from collections import OrderedDict

from actorflow._private import errors
from actorflow._private.node.segments import SegmentTable

_MAX_MESSAGE = 4096
_SEND_TIMEOUT_S = 5.0  # a peer that stops reading is dropped, not waited on forever
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_MAX_PATH = 100  # sun_path holds 108 bytes; longer paths are reached through /proc/self/fd


def socket_path(session_dir: str, node_id: str) -> str:
    return os.path.join(session_dir, f"store-{node_id[:8]}.sock")


def _reachable(path: str) -> tuple[str, int]:
    """A name of path short enough for sun_path, and an fd to close after use (-1 if none):
    a long path is reached through its directory's fd in /proc/self/fd."""
    if len(path.encode()) <= _MAX_PATH:
        return path, -1
    directory, name = os.path.split(path)
    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{dir_fd}/{name}", dir_fd


def peer_uid(conn: socket.socket) -> int:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return _PEERCRED.unpack(raw)[1]


class SegmentServer:
    """Serves a SegmentTable's fds on a unix socket at path (a thread of its own)."""

    def __init__(self, table: SegmentTable, path: str) -> None:
        self.table = table
        self.path = path
        self.refused = 0  # connections of another user, closed unread
        self.served = 0  # fds handed out
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._holders: dict[socket.socket, str] = {}

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            os.unlink(self.path)  # a socket file left by a killed store of this node id
        except FileNotFoundError:
            pass
        name, dir_fd = _reachable(self.path)
        try:
            listener.bind(name)
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        os.chmod(self.path, 0o600)  # (inside a 0700 directory, so never reachable before)
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="actorflow-segments", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is None:
            return
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        self._thread = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _serve(self) -> None:
        assert self._listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, "accept")
        selector.register(self._wake_r, selectors.EVENT_READ, "stop")
        try:
            while True:
                for key, _ in selector.select():
                    if key.data == "stop":
                        return
                    if key.data == "accept":
                        self._accept(selector)
                    else:
                        self._serve_one(selector, key.fileobj)  # type: ignore[arg-type]
        finally:
            for conn in list(self._holders):
                conn.close()
            self._holders.clear()
            selector.close()
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if peer_uid(conn) != os.getuid():
            self.refused += 1
            conn.close()
            return
        conn.setblocking(True)
        conn.settimeout(_SEND_TIMEOUT_S)
        self._holders[conn] = ""
        selector.register(conn, selectors.EVENT_READ, "conn")

    def _serve_one(self, selector: selectors.BaseSelector, conn: socket.socket) -> None:
        try:
            data, fds, _flags, _ = socket.recv_fds(conn, _MAX_MESSAGE, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, fds = b"", []
        try:
            if not data:
                raise ConnectionError("closed")
            self._answer(conn, data, fds)
            fds = []
        except (OSError, ValueError, UnicodeDecodeError):
            selector.unregister(conn)
            holder = self._holders.pop(conn, "")
            conn.close()
            if holder and holder not in self._holders.values():
                self.table.holder_gone(holder)
        finally:
            for fd in fds:
                os.close(fd)

    def _answer(self, conn: socket.socket, data: bytes, fds: list[int]) -> None:
        op, body = data[:1], data[1:].decode()
        holder = self._holders[conn]
        if op == b"G":

            def send(fd: int | None) -> None:
                if fd is None:
                    conn.sendall(b"n")
                else:
                    socket.send_fds(conn, [b"y"], [fd])

            self.table.send(body, holder, send)
            self.served += 1
        elif op == b"P" and len(fds) == 1:
            self.table.give(body, fds.pop(), holder)
            conn.sendall(b"k")
        elif op == b"H":
            self._holders[conn] = body
            conn.sendall(b"k")
        else:
            raise ValueError(f"unknown segment request {op!r}")


class SegmentClient:
    """A process's fds of its node's segments (any thread)."""

    def __init__(
        self, path: str, holder: str, *, local: SegmentTable | None = None, keep: int = 64
    ) -> None:
        self.path = path
        self.holder = holder
        self._local = local
        self._keep = max(1, keep)
        self._lock = threading.Lock()
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._sock: socket.socket | None = None
        self._pid = 0

    def open(self, name: str) -> int | None:
        """A new fd of segment name, for the caller to close; None if the store does not have
        it (it was freed). ActorflowError if the store cannot be reached."""
        with self._lock:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._fetch(name)
                if fd is None:
                    return None
                self._fds[name] = fd
                while len(self._fds) > self._keep:
                    os.close(self._fds.popitem(last=False)[1])
            else:
                self._fds.move_to_end(name)
            return os.dup(fd)

    def give(self, name: str, fd: int) -> None:
        """Hand a segment this process made to the store (fd stays the caller's); returns
        once the store has it."""
        if self._local is not None:
            self._local.give(name, os.dup(fd), self.holder)
            return
        with self._lock:
            self._request(b"P" + name.encode(), [fd])

    def forget(self, names: list[str] | None) -> None:
        """The store dropped these segments (None: every one, the store is gone): close our
        fds of them."""
        with self._lock:
            for name in list(self._fds) if names is None else names:
                fd = self._fds.pop(name, None)
                if fd is not None:
                    os.close(fd)

    def held(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _fetch(self, name: str) -> int | None:
        if self._local is not None:
            return self._local.open(name, self.holder)
        reply, fds = self._request(b"G" + name.encode(), [])
        if reply == b"y" and len(fds) == 1:
            return fds[0]
        for fd in fds:
            os.close(fd)
        return None

    def _request(self, message: bytes, fds: list[int]) -> tuple[bytes, list[int]]:
        sock = self._connected()
        try:
            if fds:
                socket.send_fds(sock, [message], fds)
            else:
                sock.sendall(message)
            reply, got, _flags, _ = socket.recv_fds(sock, 16, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError as exc:
            self._drop_connection()
            raise errors.ActorflowError(
                f"the node's object store cannot be reached at {self.path}: {exc}"
            ) from None
        if not reply:
            self._drop_connection()
            raise errors.ActorflowError(f"the node's object store at {self.path} hung up")
        return reply, got

    def _connected(self) -> socket.socket:
        if self._sock is not None and self._pid == os.getpid():
            return self._sock
        self._sock = None  # a forked child must not share its parent's connection
        if not self.path:
            raise errors.ActorflowError("this process does not know its node's object store")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        name, dir_fd = _reachable(self.path)
        try:
            sock.settimeout(60)  # the store answers at once; never wait in silence
            sock.connect(name)
            sock.sendall(b"H" + self.holder.encode())
            if sock.recv(16) != b"k":
                raise ConnectionError("no greeting from the store")
        except OSError as exc:
            sock.close()
            raise errors.ActorflowError(
                f"the node's object store cannot be reached at {self.path}: {exc}"
            ) from None
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        self._sock, self._pid = sock, os.getpid()
        return sock

    def _drop_connection(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
