"""Bad input on the runtime's port: the offending connection is closed (or answered with an
error) and the cluster keeps serving everyone else. Nothing is unpickled before the handshake."""

from __future__ import annotations

import os
import pickle
import socket
import stat
import struct

import msgpack
import pytest

import actorflow
from transports import auth

pytestmark = pytest.mark.timeout(60)

REQUEST, RESPONSE, FAILURE, ONEWAY = 0, 1, 2, 3


@actorflow.remote
def ping(x):
    return x + 1


# -- a raw client -------------------------------------------------------------------------------


def _endpoint(info) -> tuple[str, int]:
    address = info["address"]
    assert address.startswith("tcp://")
    host, port = address[len("tcp://") :].rsplit(":", 1)
    return host, int(port)


def _token(info) -> bytes:
    with open(os.path.join(info["session_dir"], "token")) as f:
        return bytes.fromhex(f.read().strip())


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _raw(info, timeout: float = 15.0) -> socket.socket:
    sock = socket.create_connection(_endpoint(info), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _authenticated(info, token: bytes | None = None) -> tuple[socket.socket, bytes]:
    """Connect and run the client side of the handshake; return (socket, verdict byte)."""
    sock = _raw(info)
    hello = _recv_exactly(sock, len(auth.MAGIC) + 1 + auth.NONCE_SIZE)
    assert hello[: len(auth.MAGIC)] == auth.MAGIC
    nonce_s = hello[len(auth.MAGIC) + 1 :]
    nonce_c = os.urandom(auth.NONCE_SIZE)
    token = _token(info) if token is None else token
    sock.sendall(
        auth.MAGIC + bytes([auth.VERSION]) + nonce_c + auth.client_mac(token, nonce_s, nonce_c)
    )
    verdict = _recv_exactly(sock, 1)
    if verdict == auth.ACCEPT:
        mac_s = _recv_exactly(sock, auth.MAC_SIZE)
        assert mac_s == auth.server_mac(token, nonce_c, nonce_s)
    return sock, verdict


def _frame(message) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def _read_message(sock: socket.socket):
    header = _recv_exactly(sock, 4)
    assert len(header) == 4, "connection closed instead of answering"
    (size,) = struct.unpack(">I", header)
    return msgpack.unpackb(_recv_exactly(sock, size), raw=False, strict_map_key=False)


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closes the connection (EOF or reset); False on our timeout."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


@pytest.fixture
def serving(cluster):
    """The shared cluster; after the test, check that it still runs tasks."""
    yield cluster
    assert actorflow.get(ping.remote(41), timeout=30) == 42


# -- files --------------------------------------------------------------------------------------


def test_token_and_logs_are_private(serving):
    path = os.path.join(serving["session_dir"], "token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(_token(serving)) >= 16
    logs = os.path.join(serving["session_dir"], "logs")
    assert stat.S_IMODE(os.stat(logs).st_mode) & 0o077 == 0


def test_session_dir_is_private(serving):
    assert stat.S_IMODE(os.stat(serving["session_dir"]).st_mode) & 0o077 == 0


# -- before the handshake -----------------------------------------------------------------------


def test_random_bytes_are_dropped(serving):
    sock = _raw(serving)
    sock.sendall(os.urandom(4096))
    assert _closed_by_server(sock)


def test_random_bytes_after_the_server_hello_are_dropped(serving):
    sock = _raw(serving)
    _recv_exactly(sock, len(auth.MAGIC) + 1 + auth.NONCE_SIZE)
    sock.sendall(os.urandom(len(auth.MAGIC) + 1 + auth.NONCE_SIZE + auth.MAC_SIZE))
    assert _closed_by_server(sock)


def test_wrong_token_is_rejected(serving):
    sock, verdict = _authenticated(serving, token=b"not the cluster token")
    assert verdict == auth.REJECT
    assert _closed_by_server(sock)


def test_wrong_protocol_version_is_rejected(serving):
    sock = _raw(serving)
    hello = _recv_exactly(sock, len(auth.MAGIC) + 1 + auth.NONCE_SIZE)
    assert hello
    sock.sendall(
        auth.MAGIC
        + bytes([auth.VERSION + 1])
        + os.urandom(auth.NONCE_SIZE)
        + os.urandom(auth.MAC_SIZE)
    )
    assert _recv_exactly(sock, 1) == auth.REJECT_VERSION
    assert _closed_by_server(sock)


def test_missing_token_times_out(serving):
    # A client that connects and never proves it has the token is dropped (handshake timeout).
    silent = _raw(serving, timeout=20)
    half = _raw(serving, timeout=20)
    half.sendall(auth.MAGIC + bytes([auth.VERSION]))  # a hello cut short
    assert _closed_by_server(silent)
    assert _closed_by_server(half)


def test_nothing_is_unpickled_before_the_handshake(serving, tmp_path):
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    payload = pickle.dumps(Exploit())
    for framed in (payload, struct.pack(">I", len(payload)) + payload):
        sock = _raw(serving)
        sock.sendall(framed)
        assert _closed_by_server(sock)
    # Also right after a failed handshake.
    sock, verdict = _authenticated(serving, token=b"wrong")
    assert verdict == auth.REJECT
    try:
        sock.sendall(struct.pack(">I", len(payload)) + payload)
    except OSError:
        pass
    assert _closed_by_server(sock)
    assert not marker.exists()


# -- after the handshake ------------------------------------------------------------------------


def test_a_good_client_is_answered(serving):
    sock, verdict = _authenticated(serving)
    assert verdict == auth.ACCEPT
    sock.sendall(_frame([REQUEST, 1, "gcs", "get_nodes", None]))
    kind, req_id, nodes = _read_message(sock)
    assert (kind, req_id) == (RESPONSE, 1)
    assert isinstance(nodes, list) and nodes
    sock.close()


BAD_FRAMES = {
    "undecodable-msgpack": struct.pack(">I", 3) + b"\xc1\xc1\xc1",
    "over-the-limit": struct.pack(">I", 0xFFFFFFFF) + b"\x00" * 64,
    "unknown-kind": _frame([99, 1, "gcs", "get_nodes", None]),
    "not-a-list": _frame(5),
    "a-map": _frame({"kind": 0}),
    "empty-list": _frame([]),
    "short-request": _frame([REQUEST, 1]),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_bad_frame_closes_only_that_connection(serving, name):
    bystander, verdict = _authenticated(serving)
    assert verdict == auth.ACCEPT
    sock, verdict = _authenticated(serving)
    assert verdict == auth.ACCEPT
    sock.sendall(BAD_FRAMES[name])
    assert _closed_by_server(sock)
    # Another client's connection is unaffected.
    bystander.sendall(_frame([REQUEST, 7, "gcs", "get_nodes", None]))
    assert _read_message(bystander)[:2] == [RESPONSE, 7]
    bystander.close()


BAD_REQUESTS = [
    ("unknown-actor", ["no-such-actor", "get_nodes", None]),
    ("unknown-handler", ["gcs", "no_such_handler", None]),
    ("dunder-method", ["gcs", "__init__", None]),
    ("private-attribute", ["core", "_fetch", None]),
    ("non-string-target", [5, 5, None]),
    ("list-method-name", ["gcs", ["x"], None]),
    ("bad-payload", ["gcs", "kv_get", "not a list"]),
    ("bad-lease-request", ["raylet", "request_lease", [{"CPU": "x"}, False]]),
    ("unknown-object", ["core", "get_object", [b"no such object"]]),
]


@pytest.mark.parametrize("name, request_", BAD_REQUESTS, ids=[n for n, _ in BAD_REQUESTS])
def test_bad_request_gets_an_error(serving, name, request_):
    sock, verdict = _authenticated(serving)
    assert verdict == auth.ACCEPT
    sock.sendall(_frame([REQUEST, 11, *request_]))
    kind, req_id, error = _read_message(sock)
    assert (kind, req_id) == (FAILURE, 11)
    assert isinstance(error, list) and len(error) == 2 and all(isinstance(e, str) for e in error)
    # The connection stays usable.
    sock.sendall(_frame([REQUEST, 12, "gcs", "get_nodes", None]))
    assert _read_message(sock)[:2] == [RESPONSE, 12]
    sock.close()


@pytest.mark.parametrize(
    "message",
    [
        [ONEWAY, "core", "log", ["origin", False]],
        [ONEWAY, "core", "log", [1, 2, 3]],
        [ONEWAY, "core", "cancel", ["not", "a", "task"]],
        [ONEWAY, "raylet", "worker_blocked", ["no-such-worker"]],
        [ONEWAY, "no-such-actor", "x", None],
        [RESPONSE, 123456, "an answer nobody asked for"],
        [FAILURE, 123457, ["ValueError", "nobody asked"]],
        [4, 123458, "a stream item nobody asked for"],
    ],
    ids=[
        "log-short",
        "log-types",
        "cancel-garbage",
        "unknown-worker",
        "oneway-unknown-actor",
        "stray-response",
        "stray-failure",
        "stray-stream",
    ],
)
def test_bad_one_way_messages_are_ignored(serving, message):
    sock, verdict = _authenticated(serving)
    assert verdict == auth.ACCEPT
    sock.sendall(_frame(message))
    # Still connected and served.
    sock.sendall(_frame([REQUEST, 21, "gcs", "get_nodes", None]))
    assert _read_message(sock)[:2] == [RESPONSE, 21]
    sock.close()


async def test_transport_client_with_a_wrong_token_gets_an_authentication_error(serving):
    import transports

    with pytest.raises(transports.AuthenticationError):
        await transports.connect(serving["address"], token=b"wrong token", timeout=10)
    conn = await transports.connect(serving["address"], token=_token(serving), timeout=10)
    conn.send([REQUEST, 1, "gcs", "get_nodes", None])
    assert (await conn.recv())[:2] == [RESPONSE, 1]
    await conn.aclose()


# -- messages over the frame limit, from the runtime's own side ---------------------------------


@actorflow.remote
def length(blob):
    return len(blob)


@actorflow.remote
def make_blob(size):
    return b"x" * size


def test_argument_over_the_frame_limit_fails_the_task(make_cluster, monkeypatch):
    monkeypatch.setenv("ACTORFLOW_MAX_FRAME_SIZE", str(1024 * 1024))
    monkeypatch.setenv("ACTORFLOW_INLINE_OBJECT_MAX_BYTES", str(8 * 1024 * 1024))
    make_cluster(num_cpus=1)
    assert actorflow.get(length.remote(b"small"), timeout=30) == 5  # connection now open
    ref = length.remote(b"x" * (2 * 1024 * 1024))
    with pytest.raises(actorflow.exceptions.ActorflowError) as info:
        actorflow.get(ref, timeout=5)
    assert not isinstance(info.value, actorflow.exceptions.GetTimeoutError)
    assert actorflow.get(length.remote(b"ok"), timeout=30) == 2


def test_result_over_the_frame_limit_fails_the_task(make_cluster, monkeypatch):
    # Inline values are the ones that travel in frames: large ones go to the object store.
    monkeypatch.setenv("ACTORFLOW_MAX_FRAME_SIZE", str(1024 * 1024))
    monkeypatch.setenv("ACTORFLOW_INLINE_OBJECT_MAX_BYTES", str(8 * 1024 * 1024))
    make_cluster(num_cpus=1)
    ref = make_blob.remote(2 * 1024 * 1024)
    with pytest.raises(actorflow.exceptions.ActorflowError) as info:
        actorflow.get(ref, timeout=5)
    assert not isinstance(info.value, actorflow.exceptions.GetTimeoutError)
