"""The per-process actor runtime: one event loop, one mailbox server, actors addressed by id.

Every process (driver, worker, node) has exactly one Runtime. System actors (GCS, raylet, the
core worker) and the hosts of user actors register here under an id; a message names its target
actor and a handler, and handlers are the actor's ``handle_<name>`` methods, so nothing else on an
object can be reached from the wire.

Messages are msgpack lists:

    [REQUEST,  req_id, target, method, payload]   -> answered by RESPONSE or FAILURE
    [RESPONSE, req_id, payload]
    [FAILURE,  req_id, [error_type, message]]
    [ONEWAY,   target, method, payload]
    [STREAM,   req_id, payload]                     (partial results of a request, in order)

A request goes out on this process's own connection to the peer's mailbox; its answer comes back
on the same connection, so answers and stream items of one request keep their order. Messages to
this process's own address are dispatched in place without touching the wire.

Everything here runs on the runtime's loop thread; other threads hop in with ``call_soon``.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import reprlib
import threading
from collections.abc import Callable
from typing import Any

import transports
from actorflow._private import errors
from actorflow._private.protocol.message import SPECS
from transports import CommClosedError, Connection

logger = logging.getLogger("actorflow.runtime")

REQUEST, RESPONSE, FAILURE, ONEWAY, STREAM = 0, 1, 2, 3, 4


def error_to_wire(exc: BaseException) -> list:
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return [type(exc).__name__, message]


def error_from_wire(wire: list) -> BaseException:
    """Rebuild a control-plane error: actorflow and builtin exception types by name only, since
    nothing from the wire is ever unpickled here."""
    name, message = (wire + ["", ""])[:2]
    # A peer that could not reach a third process is not itself unreachable: that one stays
    # a RemoteError, so that nothing here retries or fails over because of it.
    cls = getattr(errors, name, None) if name != "PeerUnreachableError" else None
    if cls is None:
        candidate = getattr(builtins, name, None)
        if isinstance(candidate, type) and issubclass(candidate, Exception):
            cls = candidate
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return errors.RemoteError(f"{name}: {message}")


def _unsendable(exc: BaseException, what: str) -> BaseException:
    if isinstance(exc, transports.FrameTooLargeError):
        return errors.ObjectTooLargeError(
            f"the {what} message is larger than the frame limit ({exc}); raise "
            f"ACTORFLOW_MAX_FRAME_SIZE, or pass large data by reference (actorflow.put)"
        )
    return errors.SerializationError(f"the {what} message cannot be encoded: {exc}")


class Call:
    """What a handler knows about the message it is handling."""

    __slots__ = ("runtime", "conn", "req_id")

    def __init__(self, runtime: Runtime, conn: Connection | None, req_id: int) -> None:
        self.runtime = runtime
        self.conn = conn
        self.req_id = req_id

    def stream(self, payload: Any) -> None:
        """Send a partial result of this request to its caller, ahead of the final answer."""
        if self.conn is None:
            self.runtime._deliver_stream(self.req_id, payload)
        elif not self.conn.closed:
            self.conn.send([STREAM, self.req_id, payload])

    def on_caller_lost(self, callback: Callable[[], None]) -> None:
        """Run callback when the connection this message came on closes."""
        if self.conn is not None:
            self.runtime._add_close_callback(self.conn, callback)


class _Pending:
    __slots__ = ("future", "conn", "on_stream", "started", "method")

    def __init__(
        self,
        future: asyncio.Future,
        conn: Connection | None,
        on_stream: Callable[[Any], None] | None,
    ) -> None:
        self.future = future
        self.conn = conn
        self.on_stream = on_stream
        self.started = 0.0  # loop time it was sent, if its latency is sampled
        self.method = ""


class Runtime:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        token: bytes,
        max_frame_size: int,
        connect_timeout: float = 10.0,
        tls: transports.TLSConfig | None = None,
    ) -> None:
        self.loop = loop
        self.token = token
        # TLS on every tcp connection, accepted and opened (None: plaintext, token only).
        self.tls = tls
        # With TLS, what to do with an authenticated connection whose peer showed no
        # certificate (only the GCS accepts those, to enroll members); None: close it.
        self.on_uncertified: Callable[[Connection], Any] | None = None
        self.max_frame_size = max_frame_size
        self.connect_timeout = connect_timeout
        self.address = ""
        self.actors: dict[str, Any] = {}
        self._handlers: dict[tuple[str, str], tuple[Callable, bool]] = {}
        self._listener: transports.Listener | None = None
        self._conns: dict[str, Connection] = {}
        self._outbox: dict[str, list] = {}  # messages waiting for a connection being opened
        self._pending: dict[int, _Pending] = {}
        self._next_req_id = 0
        self._close_callbacks: dict[Connection, list[Callable[[], None]]] = {}
        self._accepted: set[Connection] = set()
        self._peer_lost: dict[str, list[Callable[[], None]]] = {}
        self.loop_thread_id = threading.get_ident()
        self.closed = False
        # The process's metrics (metrics/recorder.py), set on first use: it times one request
        # in a few (sample_latency, request_latency); None times nothing.
        self.metrics: Any = None
        self.latency_recorder: Any = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, listen_address: str) -> None:
        self.loop_thread_id = threading.get_ident()
        self._listener = await transports.listen(
            listen_address,
            self._on_accept,
            token=self.token,
            max_frame_size=self.max_frame_size,
            tls=self.tls.server if self.tls is not None else None,
        )
        self.address = self._listener.address

    async def aclose(self) -> None:
        self.closed = True
        if self._listener is not None:
            await self._listener.aclose()
        for conn in list(self._conns.values()) + list(self._accepted):
            conn.close()
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(errors.PeerUnreachableError("the runtime shut down"))
        self._pending.clear()

    def register_actor(self, actor_id: str, actor: Any) -> None:
        self.actors[actor_id] = actor

    def unregister_actor(self, actor_id: str) -> None:
        self.actors.pop(actor_id, None)
        for key in [k for k in self._handlers if k[0] == actor_id]:
            del self._handlers[key]

    def call_soon(self, fn: Callable, *args: Any) -> None:
        """Run fn on the runtime loop; safe from any thread."""
        if threading.get_ident() == self.loop_thread_id:
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    # -- sending --------------------------------------------------------------------------------

    def request(
        self,
        address: str,
        target: str,
        method: str,
        payload: Any,
        on_stream: Callable[[Any], None] | None = None,
    ) -> asyncio.Future:
        """Send a request; the future resolves with the answer's payload or its error."""
        future = self.loop.create_future()
        self._next_req_id += 1
        req_id = self._next_req_id
        if address == self.address:
            self._pending[req_id] = _Pending(future, None, on_stream)
            self._dispatch_request(None, req_id, target, method, payload)
            return future
        conn = self._conns.get(address)
        pending = self._pending[req_id] = _Pending(future, conn, on_stream)
        recorder = self.latency_recorder
        if recorder is not None and recorder.sample_latency():
            pending.started, pending.method = self.loop.time(), f"{target}.{method}"
        try:
            self._send(address, conn, [REQUEST, req_id, target, method, payload])
        except (transports.TransportError, TypeError) as exc:  # too big, or not encodable
            del self._pending[req_id]
            future.set_exception(_unsendable(exc, method))
        return future

    async def request_until_reachable(
        self, address: str, target: str, method: str, payload: Any, seconds: float
    ) -> Any:
        """A request sent again while its peer cannot be reached (a process being restarted),
        for up to seconds; for requests that are safe to repeat."""
        deadline = self.loop.time() + seconds
        pause = 0.05
        while True:
            try:
                return await self.request(address, target, method, payload)
            except errors.PeerUnreachableError:
                if self.closed or self.loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, 1.0)

    def ask(
        self, address: str, message: Any, on_stream: Callable[[Any], None] | None = None
    ) -> asyncio.Future:
        """A request carrying one of protocol/'s messages (which names its target and method)."""
        spec = SPECS[type(message)]
        return self.request(address, spec.target, spec.method, message, on_stream)

    def tell(self, address: str, message: Any) -> None:
        """One of protocol/'s messages, sent one way."""
        spec = SPECS[type(message)]
        self.send_oneway(address, spec.target, spec.method, message)

    def send_oneway(self, address: str, target: str, method: str, payload: Any) -> None:
        if address == self.address:
            self._dispatch_oneway(target, method, payload)
            return
        self._send(address, self._conns.get(address), [ONEWAY, target, method, payload])

    def on_peer_lost(self, address: str, callback: Callable[[], None]) -> None:
        """Run callback once when our connection to address closes or cannot be opened."""
        self._peer_lost.setdefault(address, []).append(callback)

    def drop_peer(self, address: str, reason: str) -> None:
        """Give up on a peer that is known dead but whose connection may never close (a
        partitioned or frozen machine): its requests fail now, its close callbacks run."""
        conn = self._conns.pop(address, None)
        if conn is None:
            return
        self._on_outgoing_closed(address, conn, ConnectionError(reason))
        conn.close()

    def _send(self, address: str, conn: Connection | None, message: list) -> None:
        if conn is not None and not conn.closed:
            conn.send(message)
            return
        queued = self._outbox.get(address)
        if queued is None:
            self._outbox[address] = [message]
            self.loop.create_task(self._open(address))
        else:
            queued.append(message)

    async def _open(self, address: str) -> None:
        try:
            conn = await transports.connect(
                address,
                token=self.token,
                timeout=self.connect_timeout,
                max_frame_size=self.max_frame_size,
                tls=self.tls.client if self.tls is not None else None,
            )
        except Exception as exc:
            self._fail_outbox(address, exc)
            return
        self._conns[address] = conn
        conn.set_handler(
            lambda msg: self._on_message(conn, msg),
            lambda exc: self._on_outgoing_closed(address, conn, exc),
        )
        for message in self._outbox.pop(address, []):
            if message[0] == REQUEST:
                pending = self._pending.get(message[1])
                if pending is not None:
                    pending.conn = conn
            try:
                conn.send(message)
            except CommClosedError as exc:  # closed as soon as opened: it never left
                error = errors.PeerUnreachableError(f"connection to {address} lost: {exc}")
                error.delivered = False
                self._fail_request(message, error)
            except Exception as exc:  # e.g. a frame over the limit: fail only that request
                self._fail_request(message, exc)

    def _fail_outbox(self, address: str, exc: BaseException) -> None:
        if isinstance(exc, transports.TLSError):
            error: BaseException = errors.TLSError(str(exc))
        elif isinstance(exc, transports.AuthenticationError):
            error = errors.AuthenticationError(str(exc))
        else:
            error = errors.PeerUnreachableError(f"cannot reach {address}: {exc}")
            error.delivered = False
        for message in self._outbox.pop(address, []):
            self._fail_request(message, error)
        self._run_peer_lost(address)

    def _fail_request(self, message: list, exc: BaseException) -> None:
        if message[0] == REQUEST:
            pending = self._pending.pop(message[1], None)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(exc)

    def _on_outgoing_closed(
        self, address: str, conn: Connection, exc: BaseException | None
    ) -> None:
        if self._conns.get(address) is conn:
            del self._conns[address]
        self._on_closed(conn, exc)
        self._run_peer_lost(address)

    def _run_peer_lost(self, address: str) -> None:
        for callback in self._peer_lost.pop(address, []):
            try:
                callback()
            except Exception:
                logger.exception("peer-lost callback failed")

    # -- receiving ------------------------------------------------------------------------------

    def _on_accept(self, conn: Connection) -> Any:
        if conn.tls and conn.peer_certificate is None:
            if self.on_uncertified is not None:
                return self.on_uncertified(conn)
            logger.warning("closing %s: it presented no TLS certificate", conn.peer_address)
            conn.close()
            return None
        self._accepted.add(conn)
        conn.set_handler(
            lambda msg: self._on_message(conn, msg), lambda exc: self._on_closed(conn, exc)
        )

    def _on_closed(self, conn: Connection, exc: BaseException | None) -> None:
        self._accepted.discard(conn)
        lost = [rid for rid, p in self._pending.items() if p.conn is conn]
        for req_id in lost:
            pending = self._pending.pop(req_id)
            if not pending.future.done():
                reason = f": {exc}" if exc else ""
                pending.future.set_exception(
                    errors.PeerUnreachableError(f"connection to {conn.peer_address} lost{reason}")
                )
        for callback in self._close_callbacks.pop(conn, []):
            try:
                callback()
            except Exception:
                logger.exception("connection-close callback failed")

    def _add_close_callback(self, conn: Connection, callback: Callable[[], None]) -> None:
        if conn.closed:
            self.loop.call_soon(callback)
        else:
            self._close_callbacks.setdefault(conn, []).append(callback)

    def _on_message(self, conn: Connection, msg: Any) -> None:
        try:
            kind = msg[0]
            if kind == RESPONSE:
                pending = self._pending.pop(msg[1], None)
                if pending is not None and not pending.future.done():
                    if pending.started:
                        self._timed(pending)
                    pending.future.set_result(msg[2])
            elif kind == REQUEST:
                self._dispatch_request(conn, msg[1], msg[2], msg[3], msg[4])
            elif kind == ONEWAY:
                self._dispatch_oneway(msg[1], msg[2], msg[3])
            elif kind == STREAM:
                self._deliver_stream(msg[1], msg[2])
            elif kind == FAILURE:
                pending = self._pending.pop(msg[1], None)
                if pending is not None and not pending.future.done():
                    if pending.started:
                        self._timed(pending)
                    pending.future.set_exception(error_from_wire(msg[2]))
            else:
                raise ValueError(
                    f"unknown message kind {kind!r}: a message is an array whose first item is "
                    f"{REQUEST} (request), {RESPONSE}, {FAILURE}, {ONEWAY} or {STREAM}"
                )
        except (TypeError, IndexError, KeyError, ValueError) as exc:
            # Malformed: this peer is broken or hostile; drop it, keep serving everyone else.
            logger.warning(
                "malformed message from %s: %s (%s: %s); closing that connection",
                conn.peer_address,
                reprlib.repr(msg),
                type(exc).__name__,
                exc,
            )
            conn.close()

    def _timed(self, pending: _Pending) -> None:
        try:
            self.latency_recorder.request_latency(
                pending.method, self.loop.time() - pending.started
            )
        except Exception:
            logger.exception("recording a request's latency failed")

    def _deliver_stream(self, req_id: int, payload: Any) -> None:
        pending = self._pending.get(req_id)
        if pending is not None and pending.on_stream is not None:
            try:
                pending.on_stream(payload)
            except Exception:
                logger.exception("stream handler failed")

    def _handler(self, target: str, method: str) -> tuple[Callable, bool]:
        key = (target, method)
        found = self._handlers.get(key)
        if found is None:
            actor = self.actors.get(target)
            if actor is None:
                raise LookupError(f"no actor {target!r} at {self.address}")
            if not isinstance(method, str):
                raise LookupError(f"bad handler name {method!r}")
            fn = getattr(actor, "handle_" + method, None)
            if fn is None:
                raise LookupError(f"actor {target!r} has no handler {method!r}")
            found = (fn, inspect.iscoroutinefunction(fn))
            self._handlers[key] = found
        return found

    def _dispatch_request(
        self, conn: Connection | None, req_id: int, target: str, method: str, payload: Any
    ) -> None:
        call = Call(self, conn, req_id)
        try:
            fn, is_async = self._handler(target, method)
            if is_async:
                task = self.loop.create_task(fn(payload, call))
                task.add_done_callback(lambda t: self._answer_task(call, t))
                return
            result = fn(payload, call)
        except Exception as exc:
            self._answer(call, FAILURE, error_to_wire(exc))
            return
        if isinstance(result, asyncio.Future):  # answered later, without a Task per message
            result.add_done_callback(lambda f: self._answer_task(call, f))
            return
        self._answer(call, RESPONSE, result)

    def _answer_task(self, call: Call, task: asyncio.Future) -> None:
        if task.cancelled():
            self._answer(call, FAILURE, ["TaskCancelledError", "handler was cancelled"])
            return
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, (errors.ActorflowError, LookupError, ValueError, TypeError)):
                logger.error("handler failed", exc_info=exc)
            self._answer(call, FAILURE, error_to_wire(exc))
        else:
            self._answer(call, RESPONSE, task.result())

    def _answer(self, call: Call, kind: int, payload: Any) -> None:
        if call.conn is None:  # a request from this very process
            pending = self._pending.pop(call.req_id, None)
            if pending is None or pending.future.done():
                return
            if kind == RESPONSE:
                pending.future.set_result(payload)
            else:
                pending.future.set_exception(error_from_wire(payload))
            return
        if call.conn.closed:
            return
        try:
            call.conn.send([kind, call.req_id, payload])
        except CommClosedError:
            pass
        except (transports.TransportError, TypeError) as exc:  # too big, or not encodable
            error = _unsendable(exc, "answer")
            logger.error("%s", error)
            call.conn.send([FAILURE, call.req_id, error_to_wire(error)])

    def _dispatch_oneway(self, target: str, method: str, payload: Any) -> None:
        try:
            fn, is_async = self._handler(target, method)
            if is_async:
                self.loop.create_task(fn(payload, None))
            else:
                fn(payload, None)
        except LookupError as exc:
            logger.warning("dropped one-way message: %s", exc)
        except Exception:
            logger.exception("one-way handler %s.%s failed", target, method)
