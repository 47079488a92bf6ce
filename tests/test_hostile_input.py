"""Hostile input, generated: property-based tests (hypothesis) drive the frame decoder, every
message's payload validation, and the live ports of a cluster (the driver's, which hosts the
GCS, raylet and store under init(), and an actor worker's) with malformed frames and payloads
after authentication; then a flood of connections that never finish the handshake. Each bad
input gets a clear error or a closed connection, and the processes keep serving.

The hand-written cases (one of each kind of bad frame, wrong tokens, ...) are in
test_wire_security.py; this file generates many more."""

from __future__ import annotations

import importlib
import pkgutil
import socket
import struct
import threading
import time
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wire_security import _authenticated, _frame, _read_message, _token

import actorflow
import actorflow._private.protocol as protocol_package
from actorflow import exceptions
from actorflow._private.protocol.message import _SHAPES, SPECS, decode
from transports import auth
from transports.framing import FrameDecoder

pytestmark = pytest.mark.timeout(300)

REQUEST, RESPONSE, FAILURE, ONEWAY = 0, 1, 2, 3

for _module in pkgutil.iter_modules(protocol_package.__path__):  # every message is declared
    importlib.import_module(f"{protocol_package.__name__}.{_module.name}")
KINDS = sorted(SPECS, key=lambda kind: (SPECS[kind].target, SPECS[kind].method))

# -- generated values -----------------------------------------------------------------------------

# What msgpack can carry, with the edges that break naive handlers: huge and negative numbers,
# NaN, empty and long strings, bytes where text is expected, nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.integers(-(2**63), 2**64 - 1)), inner, max_size=5
        ),
    ),
    max_leaves=30,
)


def _of_type(accepted: Any) -> st.SearchStrategy:
    """A value that passes a field's top-level type check, with anything inside."""
    types = accepted if isinstance(accepted, tuple) else (accepted,)
    choices = []
    for kind in types:
        if kind is object:
            choices.append(values)
        elif kind is bool:
            choices.append(st.booleans())
        elif kind is int:
            choices.append(st.integers(min_value=-(2**63), max_value=2**64 - 1))
        elif kind is float:
            choices.append(st.floats())
        elif kind is str:
            choices.append(st.text(max_size=40))
        elif kind is bytes:
            choices.append(st.binary(max_size=40))
        elif kind in (list, tuple):
            choices.append(st.lists(values, max_size=6))
        elif kind is dict:
            choices.append(st.dictionaries(st.text(max_size=10), values, max_size=5))
        elif kind is type(None):
            choices.append(st.none())
    return st.one_of(choices) if choices else values


@st.composite
def payloads(draw: Any, kind: type) -> Any:
    """Half shaped like the message (so that validation inside the handler is reached), half
    anything at all."""
    required, size, accepted = _SHAPES[kind]
    if draw(st.booleans()):
        return draw(values)
    length = draw(st.integers(min_value=max(0, required - 1), max_value=size + 1))
    return [draw(_of_type(accepted[i] if i < size else object)) for i in range(length)]


# -- the decoders, without a cluster ------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(data=st.data())
def test_every_message_takes_a_generated_payload_or_names_what_is_wrong(data):
    kind = data.draw(st.sampled_from(KINDS))
    payload = data.draw(payloads(kind))
    try:
        decoded = decode(kind, payload)
    except exceptions.MalformedMessageError as exc:
        spec = SPECS[kind]
        assert f"{spec.method} message to {spec.target!r}" in str(exc)
    else:
        assert isinstance(decoded, kind)


@settings(max_examples=1500, deadline=None)
@given(stream=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=8))
def test_the_frame_decoder_takes_any_bytes(stream, cuts):
    """Random bytes, cut anywhere: frames come out, or an error is set and input refused."""
    decoder = FrameDecoder(max_frame_size=1 << 16)
    edges = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    for start, end in zip(edges, edges[1:], strict=False):
        out = decoder.feed(stream[start:end])
        assert isinstance(out, list)
        if decoder.error is not None:
            assert decoder.feed(b"\x00\x00\x00\x01\xc0") == []  # refused from then on
            return
    assert decoder.buffered <= len(stream)


@settings(max_examples=500, deadline=None)
@given(message=values)
def test_the_frame_decoder_gives_back_what_was_framed(message):
    body = msgpack.packb(message, use_bin_type=True)
    frames = (struct.pack(">I", len(body)) + body) * 2
    decoder = FrameDecoder()
    out = [m for i in range(0, len(frames), 7) for m in decoder.feed(frames[i : i + 7])]
    assert decoder.error is None and len(out) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"\x91" * 200_000,  # an array nested 200,000 deep
        b"\xdd\xff\xff\xff\xff",  # an array that announces 4 billion items
        b"\xdb\xff\xff\xff\xf0abc",  # a string that announces 4 GB
        b"\xc1",  # a byte msgpack never uses
    ],
    ids=["deep-nesting", "huge-array", "huge-string", "never-used"],
)
def test_the_frame_decoder_refuses_hostile_bodies(body):
    decoder = FrameDecoder(max_frame_size=1 << 20)
    assert decoder.feed(struct.pack(">I", len(body)) + body) == []
    assert decoder.error is not None


# -- the live ports ----------------------------------------------------------------------------

# Requests a peer with the token may send that change the cluster itself (register a node,
# turn a worker into an actor, end a job, kill) or that wait by design (long polls, leases):
# their payload checks are covered above and in test_protocol.py, but generated ones are not
# sent to a live cluster, which must stay usable for the check at the end.
NOT_SENT = {
    ("actor", "become_actor"),
    ("actors", "actor_exited"),
    ("actors", "actor_worker_exited"),
    ("actors", "kill_actor"),
    ("actors", "wait_actor"),
    ("actors", "watch_actor"),
    ("gcs", "heartbeat"),
    ("gcs", "register_node"),
    ("gcs", "wait_node_deaths"),
    ("placement_groups", "wait_placement_group"),
    ("raylet", "job_finished"),
    ("raylet", "prepare_bundles"),
    ("raylet", "commit_bundles"),
    ("raylet", "reclaim_bundles"),
    ("raylet", "reclaim_orphaned_leases"),
    ("raylet", "register_worker"),
    ("raylet", "request_lease"),
    ("store", "pull"),
    ("worker", "push_task"),
} | {("core", "log"), ("core", "progress")}  # valid ones print on the driver's console
PRINTING = {("core", "log"), ("core", "progress")}
SENT = [kind for kind in KINDS if (SPECS[kind].target, SPECS[kind].method) not in NOT_SENT]


@actorflow.remote
class Echo:
    def echo(self, x):
        return x

    def address(self):
        from actorflow._private.worker import context

        return context.core_or_none().address


@actorflow.remote
def plus_one(x):
    return x + 1


class Port:
    """An authenticated raw connection to one mailbox server, reopened when it is closed."""

    def __init__(self, address: str, token: bytes) -> None:
        host, port = address[len("tcp://") :].rsplit(":", 1)
        self.info = {"address": address, "token": token}
        self.endpoint = (host, int(port))
        self.sock: socket.socket | None = None
        self.sent = self.answered = self.failed = self.closed = 0

    def _open(self) -> socket.socket:
        if self.sock is None:
            sock, verdict = _authenticated_at(self.endpoint, self.info["token"])
            assert verdict == auth.ACCEPT
            self.sock = sock
        return self.sock

    def request(self, req_id: int, target: Any, method: Any, payload: Any) -> None:
        """Send one request; it must be answered (response or error) or the connection
        closed. A reply is matched by its id: other traffic is skipped."""
        sock = self._open()
        self.sent += 1
        try:
            sock.sendall(_frame([REQUEST, req_id, target, method, payload]))
            while True:
                reply = _read_message(sock)
                if reply[:2] in ([RESPONSE, req_id], [FAILURE, req_id]):
                    break
        except (AssertionError, ConnectionError):
            self.closed += 1
            self._reset()
            return
        if reply[0] == RESPONSE:
            self.answered += 1
        else:
            error = reply[2]
            assert isinstance(error, list) and len(error) == 2, reply
            assert all(isinstance(part, str) and part for part in error), reply
            self.failed += 1

    def send_raw(self, frame: bytes) -> None:
        sock = self._open()
        self.sent += 1
        try:
            sock.sendall(frame)
        except ConnectionError:
            self.closed += 1
            self._reset()

    def still_served(self) -> None:
        """The connection (or a new one, if it was closed) is answered."""
        sock = self._open()
        try:
            sock.sendall(_frame([REQUEST, 1, "no-such-target", "x", None]))
            while (reply := _read_message(sock))[:2] != [FAILURE, 1]:
                pass
        except (AssertionError, ConnectionError):
            self.closed += 1
            self._reset()
            sock = self._open()
            sock.sendall(_frame([REQUEST, 1, "no-such-target", "x", None]))
            reply = _read_message(sock)
        assert reply[:2] == [FAILURE, 1]

    def _reset(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def close(self) -> None:
        self._reset()


def _authenticated_at(endpoint: tuple[str, int], token: bytes) -> tuple[socket.socket, bytes]:
    info = {"address": f"tcp://{endpoint[0]}:{endpoint[1]}"}
    return _authenticated(info, token=token)


@pytest.fixture
def fuzzed(cluster):
    """The shared cluster's driver port (the GCS, raylet and store live there under init())
    and an actor worker's port, authenticated. The fuzz leaves junk behind (KV keys, objects,
    borrow records), so it is shut down: the next test gets a fresh one."""
    echo = Echo.remote()
    token = _token(cluster)
    ports = {
        "driver": Port(cluster["address"], token),
        "actor": Port(actorflow.get(echo.address.remote(), timeout=60), token),
    }
    yield ports, echo
    for port in ports.values():
        port.close()
    actorflow.shutdown()


def _still_works(ports: dict[str, Port], echo: Any) -> None:
    """The fuzzed cluster serves tasks, the actor and every port; what each port saw."""
    assert actorflow.get([plus_one.remote(i) for i in range(50)], timeout=60) == list(range(1, 51))
    assert actorflow.get(echo.echo.remote("still here"), timeout=60) == "still here"
    for name, port in ports.items():
        port.still_served()
        print(
            f"{name}: {port.sent} frames sent, {port.answered} answered, {port.failed} "
            f"errors, {port.closed} connections closed"
        )


def _targets(kind: type | None) -> st.SearchStrategy:
    if kind is None:
        return st.tuples(values, values)
    return st.just((SPECS[kind].target, SPECS[kind].method))


def test_generated_requests_on_live_ports_get_an_answer_or_a_closed_connection(fuzzed):
    ports, echo = fuzzed

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def one_request(data):
        port = ports[data.draw(st.sampled_from(sorted(ports)))]
        kind = data.draw(st.one_of(st.none(), st.sampled_from(SENT)))
        target, method = data.draw(_targets(kind))
        payload = data.draw(payloads(kind) if kind is not None else values)
        req_id = data.draw(st.integers(min_value=2, max_value=2**32))
        port.request(req_id, target, method, payload)

    one_request()
    _still_works(ports, echo)
    assert sum(p.sent for p in ports.values()) >= 400


def test_generated_frames_on_live_ports_never_stop_the_server(fuzzed):
    """Any message at all (one-way, stray replies, nonsense kinds): the connection is kept
    and served, or closed; the server goes on."""
    ports, echo = fuzzed

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        message=st.one_of(
            st.lists(values, max_size=6),
            values,
            st.tuples(
                st.sampled_from([ONEWAY, RESPONSE, FAILURE, 4, 5, 99]), values, values, values
            ),
        ),
        which=st.sampled_from(sorted(ports)),
    )
    def one_frame(message, which):
        port = ports[which]
        if isinstance(message, tuple) and message[0] == ONEWAY and _quiet(message):
            return
        port.send_raw(_frame(list(message) if isinstance(message, tuple) else message))
        port.still_served()

    one_frame()
    _still_works(ports, echo)


def _quiet(message: tuple) -> bool:
    """One-way messages that print to the driver's console (forwarded worker output,
    progress bars) are valid traffic, left out to keep the test's output readable."""
    return any(message[1] == target and message[2] == method for target, method in PRINTING)


# -- a flood of connections ---------------------------------------------------------------------


def _endpoint_of(address: str) -> tuple[str, int]:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def _hold(endpoint: tuple[str, int], count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(endpoint, timeout=30)
        sock.setblocking(False)
        held.append(sock)
    return held


def _closed(sock: socket.socket) -> bool:
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


@pytest.mark.timeout(240)
def test_a_flood_of_unfinished_handshakes_does_not_stop_the_work(local_cluster, poll_until):
    """1,000 connections that never finish the handshake against the GCS and 100 that send
    one byte a second against a node, while the driver keeps running tasks: every task
    completes, and the server drops every one of those connections (handshake timeout)."""
    local_cluster.add_node(num_cpus=1)
    node = local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    silent = _hold(_endpoint_of(node["gcs_address"]), 1000)
    slow = _hold(_endpoint_of(node["address"]), 100)
    stop = threading.Event()
    dripped = [0]

    def drip() -> None:  # one byte a second on each slow connection, until dropped or told
        while not stop.wait(1.0):
            for sock in slow:
                try:
                    sock.send(b"A")
                    dripped[0] += 1
                except OSError:
                    pass

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        done = 0
        deadline = time.monotonic() + 8.0  # a duration of load, not a speed check
        while time.monotonic() < deadline:
            batch = [plus_one.remote(i) for i in range(20)]
            assert actorflow.get(batch, timeout=60) == list(range(1, 21))
            done += len(batch)
        poll_until(
            lambda: all(_closed(s) for s in silent + slow),
            timeout=60,
            message="connections that never finished the handshake were kept open",
        )
        print(
            f"flood: {len(silent)} silent + {len(slow)} slow connections held "
            f"({dripped[0]} bytes dripped), {done} tasks completed meanwhile"
        )
        assert done > 0
        assert actorflow.get(plus_one.remote(1), timeout=60) == 2
    finally:
        stop.set()
        dripper.join(timeout=5)
        for sock in silent + slow:
            sock.close()
