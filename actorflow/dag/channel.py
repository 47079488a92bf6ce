"""Shared-memory channels of a compiled graph: one writer, one reader, on one machine.

A channel is anonymous shared memory (a memfd) mapped by both ends, cut into ``slots`` slots
(one per execution that may be in flight), and a pipe beside it. The writer fills slot
``seq % slots`` and writes one byte to the pipe; the reader blocks in ``read(2)`` on the pipe,
with no event loop in between, then reads the slot. The pipe orders messages and carries the
wake-up; the slot count bounds what can be unread at once (the driver never lets more executions
be in flight), so a writer never waits. A ``b"s"`` byte in the pipe (from the driver, at
teardown) stops the reader.

The driver makes both (``ChannelMemory``) and keeps their fds; each end, the driver's included,
opens them as ``/proc/<driver pid>/fd/<n>`` (which a process of the same user may do). Nothing
has a name in any file system, so nothing outlives the processes using it, however they end.

A value too large for a slot goes in a memfd of its own that the writer keeps; the slot names it
(``pid:fd``) and the reader opens it the same way. The writer lets go of it when it writes that
slot again: by then the reader has read it (the slot count bounds what is unread).
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import time
from typing import Any

from actorflow._private.node.segments import anonymous_memory

DATA = b"d"
STOP = b"s"
VALUE = 0
ERROR = 1
_SPILLED = 2
_HEADER = struct.Struct("<IB")  # payload length, kind
_DATA_OFFSET = 8
# A reader polls this long before it sleeps in read(2): a message that comes within it is seen
# without the wake-up of a sleeping process on another core, which costs tens of microseconds
# on a virtual machine (and made 1-actor round trips bimodal, 30 or 70 us). Only when every
# process of the graph has a core of its own: spinning readers would take the others' cores.
SPIN_SECONDS = 50e-6


def spin_until_readable(poller: select.poll, seconds: float = SPIN_SECONDS) -> bool:
    """Poll without sleeping for up to seconds; whether a registered fd became readable."""
    deadline = time.perf_counter() + seconds
    while True:
        if poller.poll(0):
            return True
        if time.perf_counter() >= deadline:
            return False


# Where a channel's memory and pipe are: (pid of the process holding them, memory fd, pipe fd).
Locator = tuple[int, int, int]


class Stopped(Exception):
    """The channel was told to stop (the graph is being torn down)."""


class ChannelMemory:
    """A channel's memory and pipe, made and held by the driver (before any end opens them)."""

    def __init__(self, name: str, slots: int, slot_size: int) -> None:
        self.memory = anonymous_memory(name, slots * slot_size)
        self.pipe_r, self.pipe_w = os.pipe()
        self.locator: Locator = (os.getpid(), self.memory, self.pipe_r)

    def close(self) -> None:
        for fd in (self.memory, self.pipe_r, self.pipe_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _open_held(pid: int, fd: int) -> int:
    """Our own fd of what process pid holds as fd (read-write)."""
    return os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)


class Channel:
    """One end of a channel (either end; a channel's ends each keep their own sequence)."""

    def __init__(
        self, locator: Locator, slots: int, slot_size: int, nonblocking: bool = False
    ) -> None:
        pid, memory, pipe = locator
        self.slots = slots
        self.slot_size = slot_size
        # A pipe opened through /proc is opened as a FIFO: O_RDWR (Linux) does not wait for the
        # other end.
        self.fd = _open_held(pid, pipe)
        if nonblocking:
            os.set_blocking(self.fd, False)
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)
        self.spin_seconds = 0.0  # set where every process of the graph has a core of its own
        shared = _open_held(pid, memory)
        try:
            self.buf = mmap.mmap(shared, slots * slot_size)
        finally:
            os.close(shared)
        self.seq = 0
        self._spills: dict[int, int] = {}  # slot -> memfd of the large value written there

    def write(self, kind: int, payload: bytes) -> None:
        slot = self.seq % self.slots
        offset = slot * self.slot_size
        old = self._spills.pop(slot, None)
        if old is not None:  # the value written there before has been read
            os.close(old)
        if len(payload) > self.slot_size - _DATA_OFFSET:
            spill = anonymous_memory("actorflow-cgraph-value", len(payload))
            self._spills[slot] = spill
            written = 0
            while written < len(payload):  # pwrite may write less than asked for huge values
                written += os.pwrite(spill, memoryview(payload)[written:], written)
            payload = f"{os.getpid()}:{spill}".encode()
            kind |= _SPILLED
        _HEADER.pack_into(self.buf, offset, len(payload), kind)
        start = offset + _DATA_OFFSET
        self.buf[start : start + len(payload)] = payload
        self.seq += 1
        os.write(self.fd, DATA)

    def take(self) -> tuple[int, bytes]:
        """The next message, once its FIFO byte has been read."""
        offset = (self.seq % self.slots) * self.slot_size
        length, kind = _HEADER.unpack_from(self.buf, offset)
        start = offset + _DATA_OFFSET
        payload = bytes(self.buf[start : start + length])
        self.seq += 1
        if kind & _SPILLED:
            pid, fd = (int(part) for part in payload.decode().split(":"))
            spill = _open_held(pid, fd)
            try:
                with os.fdopen(spill, "rb", closefd=False) as f:
                    payload = f.read()
            finally:
                os.close(spill)
            kind &= ~_SPILLED
        return kind, payload

    def read(self) -> tuple[int, bytes]:
        """Block until the next message (or a stop)."""
        if self.spin_seconds:
            spin_until_readable(self._poller, self.spin_seconds)
        if os.read(self.fd, 1) == STOP:
            raise Stopped
        return self.take()

    def ready(self, timeout: float | None) -> bool:
        """Whether a byte is waiting in the FIFO within timeout seconds."""
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(ms))

    async def aread(self, loop: Any) -> tuple[int, bytes]:
        """read() for an end on an event loop (opened nonblocking)."""
        while True:
            try:
                byte = os.read(self.fd, 1)
                break
            except BlockingIOError:
                waiter = loop.create_future()
                loop.add_reader(self.fd, waiter.set_result, None)
                try:
                    await waiter
                finally:
                    loop.remove_reader(self.fd)
        if byte == STOP:
            raise Stopped
        return self.take()

    def pending(self) -> bool:
        """Whether a message is here that polling the fd would not show (never: the pipe
        carries one byte per message)."""
        return False

    def stop(self) -> None:
        try:
            os.write(self.fd, STOP)
        except OSError:
            pass

    def close(self) -> None:
        for spill in self._spills.values():
            os.close(spill)
        self._spills.clear()
        try:
            os.close(self.fd)
        except OSError:
            pass
        try:
            self.buf.close()
        except (BufferError, ValueError):
            pass
