"""A cluster started the way users start one (``actorflow start``) is closed to others: it
listens on 127.0.0.1 unless told otherwise, its token and session are private, every port (the
GCS's, each node's, each worker's) wants the token before anything else, and the token shows on
no command line and in no environment user code sees.

(tests/test_wire_security.py covers the wire protocol in depth on one port; this module covers
every process of a multi-node cluster.)"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import process_gone
from test_cli_cluster import CliCluster

import transports
from transports import auth

pytestmark = pytest.mark.timeout(60)

REQUEST, RESPONSE = 0, 1


WORKLOAD = """
import json, os, subprocess, sys
import actorflow

actorflow.init(address="auto")

def seen():
    proc = open("/proc/self/environ", "rb").read().decode(errors="replace")
    child = subprocess.run(["env"], capture_output=True, text=True).stdout
    return {"environ": dict(os.environ), "proc_environ": proc, "child_env": child,
            "pid": os.getpid()}

@actorflow.remote
def task():
    return seen()

@actorflow.remote
class Holder:
    def seen(self):
        return seen()

holder = Holder.options(name="holder", lifetime="detached").remote()
print(json.dumps({"task": actorflow.get(task.remote(), timeout=60),
                  "actor": actorflow.get(holder.seen.remote(), timeout=60),
                  "driver_pid": os.getpid()}), flush=True)
sys.stdin.read()  # keep the driver (and its listening port) until the test is done
"""


def _two_nodes_with_workers(cli: CliCluster) -> dict:
    """A head and a second node with default settings, and a driver that ran a task and made a
    detached actor; what the task and the actor saw."""
    cli.ok("start", "--head", "--port", "0", "--num-cpus", "2")
    cli.ok("start", "--address", cli.gcs_address, "--num-cpus", "1")
    driver = cli.driver(WORKLOAD)
    assert driver.stdout is not None
    line = driver.stdout.readline()
    assert line, f"the driver failed: {driver.stderr.read() if driver.stderr else ''}"
    return json.loads(line)


# -- (a) listening sockets ----------------------------------------------------------------------


def _decode(address: str, v6: bool) -> tuple[str, int]:
    host, port = address.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp{,6} prints each 32-bit word of the address in host (little-endian) order.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw)
    return str(ip), int(port, 16)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of the TCP sockets pid listens on, from /proc/<pid>/fd and /proc/<pid>/net."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                found.append(_decode(local, v6))
    return found


def test_listening_sockets_parser_sees_a_known_listener():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert ("127.0.0.1", server.getsockname()[1]) in listening_sockets(os.getpid())


@pytest.mark.timeout(120)
def test_every_process_listens_on_loopback_only_by_default(cli):
    seen = _two_nodes_with_workers(cli)
    nodes = cli.node_files()
    workers = cli.json("list", "workers")
    pids = cli.processes()
    expected = {n["pid"] for n in nodes} | {w["pid"] for w in workers} | {seen["driver_pid"]}
    assert expected <= pids
    assert seen["task"]["pid"] in pids and seen["actor"]["pid"] in pids
    listeners = {pid: listening_sockets(pid) for pid in pids}
    # Every node, the GCS, every worker and the driver serve a port...
    for pid in expected:
        assert listeners[pid], f"pid {pid} listens on nothing"
    # ...on 127.0.0.1, and nothing of the cluster listens anywhere else.
    elsewhere = {pid: [s for s in socks if s[0] != "127.0.0.1"] for pid, socks in listeners.items()}
    assert not any(elsewhere.values()), elsewhere
    # The addresses the cluster publishes are those ports.
    ports = {port for socks in listeners.values() for _, port in socks}
    for address in [n["address"] for n in nodes] + [w["address"] for w in workers]:
        host, port = address.split("://")[-1].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) in ports


# -- (b) files ----------------------------------------------------------------------------------


def test_start_head_writes_a_private_token_and_session(cli):
    assert not os.path.exists(cli.root)
    cli.ok("start", "--head", "--port", "0", "--num-cpus", "1")
    session = cli.head_session()
    assert stat.S_IMODE(os.stat(session / "token").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(session).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cli.root).st_mode) == 0o700
    assert len(bytes.fromhex(cli.token())) >= 16
    for name in ("node.json", "nodes", "logs"):
        assert stat.S_IMODE(os.stat(session / name).st_mode) & 0o077 == 0, name
    for path in (session / "nodes").iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    # A second head gets a token of its own.
    other = CliCluster(Path(cli.root).parent / "other")
    try:
        other.ok("start", "--head", "--port", "0", "--num-cpus", "1")
        assert other.token() != cli.token()
    finally:
        other.cleanup()


# -- (c) every port wants the token -------------------------------------------------------------


async def _refused(address: str, good: bytes, target: str, method: str) -> None:
    """A wrong token fails the handshake; garbage is dropped; then the right token is
    answered (the process lives on)."""
    host, port = address.split("://")[-1].rsplit(":", 1)
    for wrong in (b"wrong token", os.urandom(32), good[:-1] + bytes([good[-1] ^ 1])):
        with pytest.raises(transports.AuthenticationError):
            await transports.connect(address, token=wrong, timeout=10)
    reader, writer = await asyncio.open_connection(host, int(port))
    hello = await reader.readexactly(len(auth.MAGIC) + 1 + auth.NONCE_SIZE)
    assert hello.startswith(auth.MAGIC)
    writer.write(os.urandom(4096))
    await writer.drain()
    try:
        rest = await asyncio.wait_for(reader.read(), 20)  # until the server closes
    except ConnectionResetError:
        rest = b""
    assert rest in (b"", auth.REJECT, auth.REJECT_VERSION)
    writer.close()
    conn = await transports.connect(address, token=good, timeout=10)
    conn.send([REQUEST, 1, target, method, None])
    answer = await asyncio.wait_for(conn.recv(), 20)
    assert answer[:2] == [RESPONSE, 1], answer
    await conn.aclose()


@pytest.mark.timeout(120)
def test_every_port_wants_the_token(cli):
    _two_nodes_with_workers(cli)
    good = bytes.fromhex(cli.token())
    nodes = [n for n in cli.node_files() if n["node_id"] != "gcs"]
    workers = cli.json("list", "workers")
    assert len(nodes) == 2 and workers
    ports = [(f"tcp://{cli.gcs_address}", "gcs", "get_nodes")]
    ports += [(n["address"], "raylet", "node_info") for n in nodes]
    ports += [(w["address"], "core", "ping") for w in workers]
    pids = {n["pid"] for n in cli.node_files()} | {w["pid"] for w in workers}

    async def check_all() -> None:
        for address, target, method in ports:
            await _refused(address, good, target, method)

    asyncio.run(check_all())
    assert not any(process_gone(pid) for pid in pids)
    status = cli.json("status")
    assert len([n for n in status["nodes"] if n["alive"]]) == 2


# -- (d) a wrong token at init --------------------------------------------------------------------

TRY_INIT = """
import sys
import actorflow
from actorflow import exceptions

for address in sys.argv[1:]:
    try:
        actorflow.init(address=address)
    except exceptions.AuthenticationError as exc:
        print("AuthenticationError:", " ".join(str(exc).split()))
    else:
        print("joined")
        actorflow.shutdown()
    assert not actorflow.is_initialized()
"""


def _try_init(cli: CliCluster, token: str, *addresses: str) -> list[str]:
    """Run TRY_INIT in a driver process with ACTORFLOW_TOKEN=token; its lines."""
    run = subprocess.run(
        [sys.executable, "-c", TRY_INIT, *addresses],
        env={**cli.env, "ACTORFLOW_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


@pytest.mark.timeout(120)
def test_a_wrong_token_fails_at_init_for_drivers_nodes_and_tools(cli):
    cli.ok("start", "--head", "--port", "0", "--num-cpus", "1")
    gcs = cli.gcs_address
    # A driver, by explicit address and by "auto" (the session's token file is overridden).
    lines = _try_init(cli, "11" * 32, gcs, "auto")
    assert len(lines) == 2, lines
    for line in lines:
        assert line.startswith("AuthenticationError:") and "token" in line, line
        assert "ACTORFLOW_TOKEN" in line
    # A token that is not even hex says so.
    (line,) = _try_init(cli, "not-hex", gcs)
    assert line.startswith("AuthenticationError:") and "ACTORFLOW_TOKEN" in line
    # A node cannot join with a wrong token.
    done = cli.run("start", "--address", gcs, env={"ACTORFLOW_TOKEN": "22" * 32})
    assert done.returncode == 1
    assert "token" in done.stderr and "Traceback" not in done.stderr
    # Nor can a tool inspect the cluster.
    done = cli.run("list", "nodes", "--address", gcs, env={"ACTORFLOW_TOKEN": "33" * 32})
    assert done.returncode == 1 and "token" in done.stderr
    # The cluster is unharmed, and the right token (from the session) still works.
    assert _try_init(cli, cli.token(), gcs) == ["joined"]
    assert len(cli.json("list", "nodes")) == 1


# -- (e) the token is on no command line and in no user code's environment -----------------------


@pytest.mark.timeout(120)
def test_the_token_is_on_no_command_line_and_hidden_from_user_code(cli):
    seen = _two_nodes_with_workers(cli)
    token = cli.token()
    pids = cli.processes()
    assert len(pids) >= 5  # the GCS, two nodes, workers, the driver
    for pid in pids:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
        assert token not in cmdline and token.upper() not in cmdline, pid
    for where in ("task", "actor"):
        env = seen[where]
        assert "ACTORFLOW_TOKEN" not in env["environ"], where
        assert token not in json.dumps(env["environ"]), where
        assert token not in env["child_env"], where  # processes user code starts
        assert token not in env["proc_environ"], where  # the worker's initial environment
