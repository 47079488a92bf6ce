"""Shared-memory channels of a compiled graph: one writer, one reader, on one machine.

A channel is a file in /dev/shm mapped by both ends, cut into ``slots`` slots (one per execution
that may be in flight), and a named pipe (FIFO) beside it. The writer fills slot ``seq % slots``
and writes one byte to the FIFO; the reader blocks in ``read(2)`` on the FIFO, with no event loop
in between, then reads the slot. The FIFO orders messages and carries the wake-up; the slot
count bounds what can be unread at once (the driver never lets more executions be in flight), so
a writer never waits. A value too large for a slot goes in a file of its own, named in the slot.
A ``b"s"`` byte in the FIFO (from the driver, at teardown) stops the reader.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import tempfile
from typing import Any

DATA = b"d"
STOP = b"s"
VALUE = 0
ERROR = 1
_SPILLED = 2
_HEADER = struct.Struct("<IB")  # payload length, kind
_DATA_OFFSET = 8


def shm_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class Stopped(Exception):
    """The channel was told to stop (the graph is being torn down)."""


def create(path: str, slots: int, slot_size: int) -> None:
    """Make the channel's files (the driver does, before any end opens them)."""
    with open(path, "wb") as f:
        f.truncate(slots * slot_size)
    os.mkfifo(path + ".fifo", 0o600)


def remove(path: str) -> None:
    for leftover in (path, path + ".fifo"):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
    directory, name = os.path.split(path)
    for entry in os.listdir(directory):
        if entry.startswith(name + ".spill"):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass


class Channel:
    """One end of a channel (either end; a channel's ends each keep their own sequence)."""

    def __init__(self, path: str, slots: int, slot_size: int, nonblocking: bool = False) -> None:
        self.path = path
        self.slots = slots
        self.slot_size = slot_size
        flags = os.O_RDWR | (os.O_NONBLOCK if nonblocking else 0)
        # O_RDWR on a FIFO (Linux) opens without waiting for the other end.
        self.fd = os.open(path + ".fifo", flags)
        with open(path, "r+b") as f:
            self.buf = mmap.mmap(f.fileno(), slots * slot_size)
        self.seq = 0

    def write(self, kind: int, payload: bytes) -> None:
        offset = (self.seq % self.slots) * self.slot_size
        if len(payload) > self.slot_size - _DATA_OFFSET:
            spill = f"{self.path}.spill{self.seq}"
            with open(spill, "wb") as f:
                f.write(payload)
            payload = spill.encode()
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
            spill = payload.decode()
            with open(spill, "rb") as f:
                payload = f.read()
            os.unlink(spill)
            kind &= ~_SPILLED
        return kind, payload

    def read(self) -> tuple[int, bytes]:
        """Block until the next message (or a stop)."""
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

    def stop(self) -> None:
        try:
            os.write(self.fd, STOP)
        except OSError:
            pass

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        try:
            self.buf.close()
        except (BufferError, ValueError):
            pass
