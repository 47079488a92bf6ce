"""An object's bytes between two stores on a connection of their own, never copied in user space.

The chunk path (transfer.py) answers each chunk as a framed message: packed and joined on the
source, buffered, unpacked and written on the puller (three copies of every byte at the puller).
Here the puller opens a connection to the source's stream listener (authenticated as any: the
cluster token, and TLS when the cluster has it) and sends one framed request
``[obj_id, puller, offset, length]``; both sides then hand the connection over from frames to raw
bytes (``Connection.detach``). The source writes views of the object's mapping to the transport
(the kernel copies from shared memory into the socket, or TLS encrypts from it), and the puller's
``BufferedProtocol`` has the transport read straight into the target segment's mapping (or TLS
decrypt into it). The source closes the connection after the last byte.

The source serves only a transfer its TransferBegin opened (so pinned) for that puller; anything
else, or a request that does not come at once, is dropped. A puller that gets fewer bytes than it
asked for, or none for the chunk timeout, fails with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import sys
from collections.abc import Callable

import transports
from actorflow._private.runtime import Runtime
from transports.address import format_host_port, parse_address, split_host_port

logger = logging.getLogger(__name__)

_SLICE_BYTES = 4 << 20  # bytes per transport.write: the write buffer holds a few of them
_OVERFLOW_BYTES = 64 << 10
# madvise(MADV_POPULATE_WRITE) (Linux 5.14): fault a range in at once (Python 3.11 lacks it)
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform == "linux" else -1)


class TargetMappings:
    """Read-write mappings of the store's segments that pulls land in, kept while the segment
    lives (a pooled segment is pulled into again): mapping 1 GiB anew and faulting it in costs
    more than receiving it (0.07 s of page-table setup for pages already there, 0.7 s for fresh
    ones, on this 2-core VM). Segment names are never reused, so a mapping is found only for
    its own segment; the store calls ``dropped`` when it unlinks segments."""

    def __init__(self) -> None:
        self._maps: dict[str, tuple[mmap.mmap, int]] = {}  # name -> (mapping, bytes faulted in)

    def target(self, name: str, fd: int, capacity: int, nbytes: int) -> memoryview:
        """A view of the first nbytes of segment name (fd: one of its fds), faulted in."""
        mapping, populated = self._maps.get(name) or (None, 0)
        if mapping is None or len(mapping) < nbytes:
            mapping, populated = mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED), 0
        if populated < nbytes:
            if _POPULATE_WRITE >= 0:
                try:
                    mapping.madvise(_POPULATE_WRITE, 0, nbytes)
                except OSError:  # an older kernel: the receive faults the pages in
                    pass
            populated = nbytes
        self._maps[name] = (mapping, populated)
        return memoryview(mapping)[:nbytes]

    def dropped(self, names: list[str]) -> None:
        for name in names:
            mapping, _ = self._maps.pop(name, (None, 0))
            if mapping is not None:
                _close(mapping)

    def close(self) -> None:
        self.dropped(list(self._maps))


def _close(mapping: mmap.mmap) -> None:
    try:
        mapping.close()
    except BufferError:  # a view still held by a transport: unmapped when it goes
        pass


def listen_address_near(address: str) -> str:
    """Where a stream listener for a runtime at address binds: the same host, any port; "" if
    the runtime is not on tcp (nothing to stream between machines)."""
    try:
        scheme, location = parse_address(address)
        if scheme != "tcp":
            return ""
        host, _ = split_host_port(address, location)
    except (TypeError, ValueError):
        return ""
    return "tcp://" + format_host_port(host, 0)


class StreamServer:
    """A store's stream listener, started on first use; serves views of open transfers."""

    def __init__(
        self,
        runtime: Runtime,
        mapping_of: Callable[[bytes, str], mmap.mmap | None],
        on_sent: Callable[[int], None],
        request_timeout: float,
    ) -> None:
        self.runtime = runtime
        self._mapping_of = mapping_of
        self._on_sent = on_sent
        self._request_timeout = request_timeout
        self._listener: transports.Listener | None = None
        self._starting: asyncio.Future | None = None
        self._senders: dict[tuple[bytes, str], set[_Sender]] = {}
        self._closed = False

    async def address(self) -> str:
        """The listener's address ("" if this store has none: pullers use chunks)."""
        if self._listener is not None:
            return self._listener.address
        if self._closed or not listen_address_near(self.runtime.address):
            return ""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception as exc:
            logger.warning("no stream listener (transfers go in chunks): %s", exc)
            if self._starting is starting:
                self._starting = None
            return ""
        return self._listener.address if self._listener is not None else ""

    async def _start(self) -> None:
        runtime = self.runtime
        listener = await transports.listen(
            listen_address_near(runtime.address),
            self._on_connection,
            token=runtime.token,
            max_frame_size=runtime.max_frame_size,
            tls=runtime.tls.server if runtime.tls is not None else None,
        )
        if self._closed:
            listener.close()
        else:
            self._listener = listener

    def stop(self, obj_id: bytes, puller: str) -> None:
        """The transfer ended (or its puller is gone): abort what is still being sent of it."""
        for sender in list(self._senders.pop((obj_id, puller), ())):
            sender.abort()

    def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for key in list(self._senders):
            self.stop(*key)

    async def _on_connection(self, conn: transports.Connection) -> None:
        if conn.tls and conn.peer_certificate is None:  # only members hold certificates
            conn.close()
            return
        try:
            request = await asyncio.wait_for(conn.recv(), self._request_timeout)
        except (asyncio.TimeoutError, transports.TransportError):
            conn.close()
            return
        view = self._view_for(request)
        if view is None:
            logger.warning("stream from %s refused: %r", conn.peer_address, request)
            conn.close()
            return
        key = (request[0], request[1])
        sender = _Sender(view, self._on_sent, lambda s: self._discard(key, s))
        self._senders.setdefault(key, set()).add(sender)
        try:
            sender.start(conn.detach(sender))
        except (RuntimeError, transports.TransportError) as exc:
            self._discard(key, sender)
            logger.warning("stream to %s not started: %s", conn.peer_address, exc)
            conn.close()

    def _view_for(self, request: object) -> memoryview | None:
        if not (
            isinstance(request, list)
            and len(request) == 4
            and isinstance(request[0], bytes)
            and isinstance(request[1], str)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in request[2:])
        ):
            return None
        obj_id, puller, offset, length = request
        mapping = self._mapping_of(obj_id, puller)
        if mapping is None or offset < 0 or length <= 0 or offset + length > len(mapping):
            return None
        return memoryview(mapping)[offset : offset + length]

    def _discard(self, key: tuple[bytes, str], sender: _Sender) -> None:
        senders = self._senders.get(key)
        if senders is not None:
            senders.discard(sender)
            if not senders:
                del self._senders[key]


class _Sender(asyncio.Protocol):
    """Writes a view of a mapping to the transport, a slice at a time while it is not paused,
    then closes it (the transport flushes what it buffered first)."""

    def __init__(
        self,
        view: memoryview,
        on_sent: Callable[[int], None],
        on_done: Callable[[_Sender], None],
    ) -> None:
        self._view: memoryview | None = view
        self._on_sent = on_sent
        self._on_done = on_done
        self._transport: asyncio.Transport | None = None
        self._position = 0
        self._paused = False

    def start(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pump()

    def _pump(self) -> None:
        view, transport = self._view, self._transport
        if view is None or transport is None:
            return
        end = len(view)
        while not self._paused and self._position < end:
            stop = min(end, self._position + _SLICE_BYTES)
            transport.write(view[self._position : stop])  # a view: nothing is copied here
            self._on_sent(stop - self._position)
            self._position = stop
        if self._position >= end:
            self._view = None
            transport.close()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        self.abort()  # the puller has nothing more to say on this connection

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._view = None
        self._on_done(self)

    def abort(self) -> None:
        self._view = None
        if self._transport is not None:
            self._transport.abort()


async def receive(
    runtime: Runtime,
    address: str,
    obj_id: bytes,
    target: memoryview,
    timeout: float,
) -> None:
    """Fill target with the bytes [0, len(target)) of obj_id, streamed from the listener at
    address (a transfer this runtime's store began). ConnectError if no connection could be
    opened (nothing was received: chunks can still be tried); ConnectionError naming how far it
    got if the stream broke or stalled for timeout seconds."""
    conn = await transports.connect(
        address,
        token=runtime.token,
        timeout=runtime.connect_timeout,
        max_frame_size=runtime.max_frame_size,
        tls=runtime.tls.client if runtime.tls is not None else None,
    )
    receiver = _Receiver(target, runtime.loop, timeout)
    try:
        conn.send([obj_id, runtime.address, 0, len(target)])
        receiver.start(conn.detach(receiver))
    except BaseException:
        conn.close()
        raise
    try:
        await receiver.done
    finally:
        receiver.finish()


class _Receiver(asyncio.BufferedProtocol):
    """Has the transport read straight into target; done when it is full."""

    def __init__(self, target: memoryview, loop: asyncio.AbstractEventLoop, timeout: float):
        self._target = target
        self._loop = loop
        self._timeout = timeout
        self._position = 0
        self._checked = -1  # position at the last progress check
        self._overflow: bytearray | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = loop.create_future()

    def start(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._check_progress()

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        if self._position < len(self._target):
            return self._target[self._position :]
        if self._overflow is None:
            self._overflow = bytearray(_OVERFLOW_BYTES)
        return self._overflow

    def buffer_updated(self, nbytes: int) -> None:
        if self._position >= len(self._target):
            self._fail(f"the source sent more than the {len(self._target)} bytes asked for")
            return
        self._position += nbytes
        if self._position == len(self._target) and not self.done.done():
            self.done.set_result(None)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._fail(f"the source closed the stream{reason}")

    def _check_progress(self) -> None:
        if self.done.done():
            return
        if self._position == self._checked:
            self._fail(f"the source sent nothing for {self._timeout:g} s")
            return
        self._checked = self._position
        self._timer = self._loop.call_later(self._timeout, self._check_progress)

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(
                ConnectionError(f"{reason} (after {self._position} of {len(self._target)} bytes)")
            )
        if self._transport is not None:
            self._transport.abort()

    def finish(self) -> None:
        """Stop the timer, close the connection, and let go of target."""
        if self._timer is not None:
            self._timer.cancel()
        if not self.done.done():  # cancelled meanwhile
            self.done.cancel()
        elif not self.done.cancelled():
            self.done.exception()  # retrieved: the caller raised it
        if self._transport is not None:
            self._transport.close()
        self._target = memoryview(b"")
