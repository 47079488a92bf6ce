"""TLS between processes (``actorflow start --head --tls``, ``ACTORFLOW_TLS=1``).

The wire: a plaintext client, a certificate of another cluster and an expired one are each
refused with a message naming the problem on both sides, and no frame is decoded. A cluster:
a node and a driver "on other machines" (session roots of their own, only the token) get their
certificates from the head and run tasks, actors and a large object transfer. Two network
namespaces: a known payload crosses the veth in clear without TLS, and not with it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_cluster import CliCluster

# test_cluster_netns's fixture two_namespaces, known here as netns.
from test_cluster_netns import two_namespaces as netns  # noqa: F401

import transports
from actorflow._private.cluster import enrollment, pki
from transports import TLSConfig, TLSError

TOKEN = secrets.token_bytes(32)


def _member(directory: Path, ca: tuple[bytes, bytes], **sign: object) -> str:
    key = pki.new_key()
    cert = pki.sign_csr(ca[0], ca[1], pki.new_csr(key, "member"), **sign)  # type: ignore[arg-type]
    return pki.write_member(str(directory), key, cert, ca[1])


@pytest.fixture
def pki_dirs(tmp_path: Path) -> dict[str, str]:
    """TLS directories: two members of cluster A, one of cluster B, an expired one of A, and
    one holding B's certificate but trusting A's CA."""
    ca_a, ca_b = pki.new_ca(), pki.new_ca()
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)
    dirs = {
        "server": _member(tmp_path / "server", ca_a),
        "member": _member(tmp_path / "member", ca_a),
        "other": _member(tmp_path / "other", ca_b),
        "expired": _member(tmp_path / "expired", ca_a, days=1, not_before=long_ago),
        "foreign": _member(tmp_path / "foreign", ca_b),
    }
    (Path(dirs["foreign"]) / "ca.pem").write_bytes(ca_a[1])
    return dirs


class _Server:
    """A TLS listener that counts what it delivers (nothing, for a refused peer)."""

    def __init__(self) -> None:
        self.delivered: list[transports.Connection] = []
        self.messages: list[object] = []

    def on_connection(self, conn: transports.Connection) -> None:
        self.delivered.append(conn)
        conn.set_handler(self.messages.append, lambda exc: None)


async def _refused(
    server_dir: str, client: object, caplog: pytest.LogCaptureFixture
) -> tuple[str, str]:
    """Connect with client (an SSLContext, or None for plaintext) to a TLS listener; the
    client's error and the server's log line, once both are there."""
    server = _Server()
    config = TLSConfig.from_dir(server_dir)
    caplog.set_level(logging.INFO, logger="transports")
    async with await transports.listen(
        "tcp://127.0.0.1:0", server.on_connection, token=TOKEN, tls=config.server
    ) as listener:
        with pytest.raises(TLSError) as raised:
            await transports.connect(listener.address, token=TOKEN, tls=client, timeout=10)  # type: ignore[arg-type]
        for _ in range(500):
            logged = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
            if logged:
                break
            await asyncio.sleep(0.01)
    assert server.delivered == [] and server.messages == [], "a refused peer got through"
    assert logged, "the server logged nothing about the refused connection"
    return str(raised.value), logged[0]


async def test_a_member_connects_over_tls_and_the_token_handshake_runs_inside(pki_dirs):
    server = _Server()
    config = TLSConfig.from_dir(pki_dirs["server"])
    async with await transports.listen(
        "tcp://127.0.0.1:0", server.on_connection, token=TOKEN, tls=config.server
    ) as listener:
        member = TLSConfig.from_dir(pki_dirs["member"])
        conn = await transports.connect(listener.address, token=TOKEN, tls=member.client)
        assert conn.tls and conn.peer_certificate
        conn.send({"hello": b"x" * 100_000})
        for _ in range(500):
            if server.messages:
                break
            await asyncio.sleep(0.01)
        assert server.messages == [{"hello": b"x" * 100_000}]
        assert server.delivered[0].tls and server.delivered[0].peer_certificate
        conn.close()
        # A wrong token is still refused inside TLS.
        with pytest.raises(transports.AuthenticationError, match="wrong cluster token"):
            await transports.connect(listener.address, token=b"wrong", tls=member.client)


async def test_a_plaintext_client_is_refused_on_a_tls_port(pki_dirs, caplog):
    client_error, server_log = await _refused(pki_dirs["server"], None, caplog)
    assert "requires TLS" in client_error and "ACTORFLOW_TLS=1" in client_error
    assert "does not speak TLS" in server_log


async def test_bytes_that_are_not_tls_are_refused_before_any_frame(pki_dirs, caplog):
    server = _Server()
    config = TLSConfig.from_dir(pki_dirs["server"])
    caplog.set_level(logging.INFO, logger="transports")
    async with await transports.listen(
        "tcp://127.0.0.1:0", server.on_connection, token=TOKEN, tls=config.server
    ) as listener:
        host, port = listener.address.split("://")[1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        preamble = await reader.readexactly(len(transports.tls.PREAMBLE))
        assert preamble == transports.tls.PREAMBLE
        # An old client's token hello, then a frame: \x00\x00\x00\x09 + msgpack.
        writer.write(b"AFLW\x01" + os.urandom(64) + b"\x00\x00\x00\x09\x93\x00\x01\xa4ping")
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed on us
        writer.close()
    assert server.delivered == []
    assert any("does not speak TLS" in r.getMessage() for r in caplog.records)


async def test_a_tls_client_is_refused_by_a_plaintext_port(pki_dirs):
    async with await transports.listen("tcp://127.0.0.1:0", lambda c: None, token=TOKEN) as lst:
        member = TLSConfig.from_dir(pki_dirs["member"])
        with pytest.raises(TLSError, match="does not use TLS"):
            await transports.connect(lst.address, token=TOKEN, tls=member.client)


async def test_a_node_of_another_cluster_is_refused(pki_dirs, caplog):
    other = TLSConfig.from_dir(pki_dirs["other"])
    client_error, server_log = await _refused(pki_dirs["server"], other.client, caplog)
    assert "not signed by this cluster's CA" in client_error
    assert "does not trust our certificate" in server_log


async def test_a_certificate_of_another_cluster_ca_is_refused(pki_dirs, caplog):
    foreign = TLSConfig.from_dir(pki_dirs["foreign"])  # trusts our CA, signed by another
    client_error, server_log = await _refused(pki_dirs["server"], foreign.client, caplog)
    assert "refused our certificate" in client_error
    assert "not signed by this cluster's CA" in client_error
    assert "not signed by this cluster's CA" in server_log


async def test_an_expired_certificate_is_refused(pki_dirs, caplog):
    expired = TLSConfig.from_dir(pki_dirs["expired"])
    client_error, server_log = await _refused(pki_dirs["server"], expired.client, caplog)
    assert "refused our certificate (our certificate has expired)" in client_error
    assert "its certificate has expired" in server_log


async def test_a_client_without_a_certificate_is_refused(pki_dirs, caplog):
    bare = transports.client_context(ca=os.path.join(pki_dirs["member"], "ca.pem"))
    client_error, server_log = await _refused(pki_dirs["server"], bare, caplog)
    assert "refused our certificate" in client_error
    assert "sent no certificate" in server_log


def test_enrollment_signs_only_requests_macd_with_the_token(tmp_path):
    head = pki.create_head_dir(str(tmp_path / "tls"))
    service = enrollment.EnrollmentService(TOKEN, head)
    key = pki.new_key()
    csr = pki.new_csr(key, "joiner")
    nonce = os.urandom(enrollment.NONCE_SIZE)
    good = {"nonce": nonce, "csr": csr, "mac": enrollment._mac(TOKEN, b"req", nonce, csr)}
    answer = service.sign({"enroll": good})
    pki.check_member(key, answer["cert"], answer["ca"])
    forged = dict(good, mac=enrollment._mac(b"not the token", b"req", nonce, csr))
    with pytest.raises(ValueError, match="does not match the cluster token"):
        service.sign({"enroll": forged})
    swapped = dict(good, csr=pki.new_csr(pki.new_key(), "intruder"))  # MAC of another CSR
    with pytest.raises(ValueError, match="does not match the cluster token"):
        service.sign({"enroll": swapped})
    with pytest.raises(ValueError, match="bad nonce"):
        service.sign({"enroll": dict(good, nonce=b"short")})


# -- a TLS cluster through the CLI ----------------------------------------------------------------

WORKLOAD = """
import os, sys
import numpy as np
import actorflow

info = actorflow.init(address=sys.argv[1])

@actorflow.remote(resources={"far": 1})
def far_sum(array):
    return actorflow.get_runtime_context().get_node_id(), float(array.sum())

@actorflow.remote(resources={"far": 1})
def far_array(n):
    return np.arange(n, dtype=np.float64)

@actorflow.remote(resources={"far": 1})
class Far:
    def add(self, x):
        return x + 1

big = np.ones(3_000_000)  # 24 MB: through the object store, pulled across nodes
node, total = actorflow.get(far_sum.remote(actorflow.put(big)), timeout=120)
assert total == 3_000_000.0, total
back = actorflow.get(far_array.remote(2_000_000), timeout=120)
assert back[-1] == 1_999_999.0 and back.nbytes == 16_000_000
far = Far.remote()
assert actorflow.get([far.add.remote(i) for i in range(50)], timeout=120) == list(range(1, 51))
print("far:" + node)
"""


def _pid_of(output: str) -> int:
    return int(output.split("(pid ", 1)[1].split(")", 1)[0])


@pytest.mark.timeout(240)
def test_tls_cluster_with_a_node_and_a_driver_from_other_machines(tmp_path):
    head = CliCluster(tmp_path / "head")
    away = CliCluster(tmp_path / "away")  # another machine: only the token, no session
    driver_root = CliCluster(tmp_path / "driver")
    stranger = CliCluster(tmp_path / "stranger")  # one more machine, with a wrong token
    try:
        out = head.ok("start", "--head", "--tls", "--port", "0", "--num-cpus", "1")
        assert "TLS: on" in out
        session = head.head_session()
        tls_dir = session / "tls"
        assert (tls_dir / "ca.key").exists() and (tls_dir / "cert.pem").exists()
        assert os.stat(session).st_mode & 0o777 == 0o700
        assert os.stat(tls_dir / "ca.key").st_mode & 0o777 == 0o600
        secret = {"ACTORFLOW_TOKEN": head.token(), "ACTORFLOW_TLS": "1"}
        out = away.ok(
            "start", "--address", head.gcs_address, "--num-cpus", "1", "--resources",
            '{"far": 1}', env=secret,
        )  # fmt: skip
        away_session = away.sessions()[0]
        assert not (away_session / "tls" / "ca.key").exists()  # only the head holds the CA key
        assert (away_session / "tls" / "cert.pem").exists()
        nodes = {n["node_id"] for n in head.node_files() + away.node_files()}
        done = subprocess.run(
            [sys.executable, "-c", WORKLOAD, head.gcs_address],
            env={**driver_root.env, **secret},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        far_node = done.stdout.strip().rsplit("far:", 1)[1]
        assert far_node in nodes and far_node in {n["node_id"] for n in away.node_files()}

        # Without ACTORFLOW_TLS, the same token is not enough: a clear error at init.
        join = f"import actorflow; actorflow.init(address={head.gcs_address!r})"
        plain = subprocess.run(
            [sys.executable, "-c", join],
            env={**driver_root.env, "ACTORFLOW_TOKEN": head.token()},
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert plain.returncode != 0
        assert "TLSError" in plain.stderr and "requires TLS" in plain.stderr, plain.stderr
        # A wrong token gets no certificate.
        wrong = stranger.run(
            "start", "--address", head.gcs_address, env={**secret, "ACTORFLOW_TOKEN": "00" * 32},
        )  # fmt: skip
        assert wrong.returncode != 0 and "no TLS certificate" in wrong.stderr, wrong.stderr
        # The CLI's inspection speaks TLS too (with the head session's certificate).
        listed = head.json("list", "nodes")
        assert len(listed) == 2, listed
    finally:
        for cluster in (stranger, driver_root, away, head):
            cluster.cleanup()


# -- what crosses the wire between two network namespaces -----------------------------------------

CAPTURE_DRIVER = """
import sys, actorflow
actorflow.init(address=sys.argv[1])

@actorflow.remote(resources={"far": 1})
def echo(text):
    return text + " (echoed)"

assert actorflow.get(echo.remote(sys.argv[2]), timeout=60) == sys.argv[2] + " (echoed)"
print("ok")
"""


def _capture(cluster, namespaces, payload: str, tls: bool, capture_file: Path) -> tuple[bytes, int]:
    """Run a task carrying payload on the far node; (captured bytes, packets) on its veth."""
    (ns_head, ip_head, _), (ns_node, ip_node, veth_node) = namespaces
    cluster.tls = tls
    cluster.add_node(num_cpus=1, host=ip_head, wrapper=["ip", "netns", "exec", ns_head])
    cluster.add_node(
        num_cpus=1, host=ip_node, resources={"far": 1}, wrapper=["ip", "netns", "exec", ns_node]
    )
    dump = subprocess.Popen(
        ["ip", "netns", "exec", ns_node, "tcpdump", "-i", veth_node, "-U", "-s", "0", "-w",
         str(capture_file), "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert dump.stderr is not None
        line = dump.stderr.readline().decode(errors="replace")  # "listening on ..." once ready
        assert "listening" in line, f"tcpdump did not start: {line}"
        env = dict(os.environ, ACTORFLOW_SESSION_ROOT=cluster.session_root)
        done = subprocess.run(
            ["ip", "netns", "exec", ns_head, sys.executable, "-c", CAPTURE_DRIVER,
             cluster.address, payload],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    finally:
        time.sleep(0.5)  # the last packets reach the file (-U: written as they come)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)
        if dump.stderr is not None:
            summary = dump.stderr.read().decode(errors="replace")
            dump.stderr.close()
        cluster.shutdown()
    packets = int(summary.split(" packets captured", 1)[0].split()[-1])
    return capture_file.read_bytes(), packets


@pytest.mark.timeout(300)
def test_a_payload_crosses_the_veth_in_clear_only_without_tls(
    local_cluster,
    netns,  # noqa: F811  (the fixture imported above)
    tmp_path,
):
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (Debian package tcpdump, installed by .ci/run)")
    plain_marker = f"actorflow-plaintext-{secrets.token_hex(8)}"
    plain, plain_packets = _capture(
        local_cluster, netns, plain_marker, False, tmp_path / "plain.pcap"
    )
    assert plain_packets > 0
    assert plain_marker.encode() in plain, "without TLS the payload should be visible"
    tls_marker = f"actorflow-tls-{secrets.token_hex(8)}"
    sealed, sealed_packets = _capture(local_cluster, netns, tls_marker, True, tmp_path / "tls.pcap")
    assert sealed_packets > 0 and len(sealed) > 2_000, "the TLS run sent nothing across"
    assert tls_marker.encode() not in sealed, "the payload crossed the veth in clear with TLS"
    assert transports.tls.PREAMBLE in sealed  # it was TLS (the preamble is the one clear part)
    assert b"AFLW\x01" not in sealed  # no plaintext token handshake either


def test_tls_ports_refuse_a_plain_socket_on_a_real_node(local_cluster):
    """A node of a TLS cluster: a raw TCP client gets the TLS preamble and nothing more."""
    local_cluster.tls = True
    node = local_cluster.add_node(num_cpus=1)
    assert node["tls"]
    host, port = node["address"].split("://")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.settimeout(10)
        got = b""
        while len(got) < len(transports.tls.PREAMBLE):
            chunk = sock.recv(100)
            if not chunk:
                break
            got += chunk
        assert got == transports.tls.PREAMBLE
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert sock.recv(100) == b""  # closed: no frame decoded
    assert json.loads(json.dumps(node["tls"])) is True


EMBEDDED = """
import socket, sys
import numpy as np
import actorflow
import transports

info = actorflow.init(num_cpus=1, _tls=True)

@actorflow.remote
def total(array):
    return float(array.sum())

@actorflow.remote
class Counter:
    def __init__(self):
        self.n = 0
    def add(self):
        self.n += 1
        return self.n

assert actorflow.get(total.remote(np.ones(1_000_000)), timeout=60) == 1_000_000.0
counter = Counter.remote()
assert actorflow.get([counter.add.remote() for _ in range(5)], timeout=60) == [1, 2, 3, 4, 5]
host, port = info["address"].split("://")[-1].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as sock:
    sock.settimeout(10)
    got = b""
    while len(got) < len(transports.tls.PREAMBLE):
        got += sock.recv(100)
assert got == transports.tls.PREAMBLE, got
print("ok")
"""


@pytest.mark.timeout(120)
def test_the_embedded_cluster_runs_tls_with_init_tls(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORFLOW_")}
    env["ACTORFLOW_SESSION_ROOT"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED], env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
    sessions = [p for p in tmp_path.glob("session_*") if not p.is_symlink()]
    assert len(sessions) == 1 and (sessions[0] / "tls" / "ca.key").exists()
