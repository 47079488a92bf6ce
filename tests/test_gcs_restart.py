"""A control store that survives restarts: the GCS process is killed with SIGKILL and started
again on the same storage (SQLite by default, or a real Redis server); nodes, workers and the
driver reconnect, named and detached actors are reachable again without a restart, and running
tasks are not disturbed while it is down."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

import actorflow
from actorflow._private.control.storage import MemoryStorage, SqliteStorage, open_storage

pytestmark = pytest.mark.timeout(180)


@actorflow.remote
class Account:
    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def pid(self) -> int:
        return os.getpid()


@actorflow.remote(resources={"far": 1})
def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


def _head_restart_keeps_the_cluster(cluster, poll_until) -> None:
    cluster.add_node(num_cpus=1)
    far = cluster.add_node(num_cpus=2, resources={"far": 2})
    actorflow.init(address=cluster.address, namespace="bank")
    account = Account.options(name="main", lifetime="detached", resources={"far": 0.5}).remote()
    assert actorflow.get(account.deposit.remote(10), timeout=60) == 10
    pid = actorflow.get(account.pid.remote(), timeout=30)
    running = slow_square.remote(7, 4.0)  # runs across the GCS's downtime

    cluster.kill_gcs()
    # While the GCS is down: calls go straight to the actor; tasks lease from the raylet.
    assert actorflow.get(account.deposit.remote(5), timeout=30) == 15
    assert actorflow.get(slow_square.remote(3, 0.0), timeout=60) == 9

    cluster.restart_gcs()
    assert actorflow.get(running, timeout=60) == 49
    again = actorflow.get_actor("main")
    assert actorflow.get(again.deposit.remote(1), timeout=30) == 16
    assert actorflow.get(again.pid.remote(), timeout=30) == pid  # the same process: no restart
    poll_until(
        lambda: (
            {n["NodeID"] for n in actorflow.nodes() if n["Alive"]}
            >= {far["node_id"], cluster.head["node_id"]}
        ),
        timeout=30,
    )
    fresh = Account.remote()  # the restarted GCS creates actors too
    assert actorflow.get(fresh.deposit.remote(2), timeout=60) == 2
    actorflow.kill(again)


def test_sqlite_head_restart(local_cluster, poll_until):
    _head_restart_keeps_the_cluster(local_cluster, poll_until)
    assert local_cluster.gcs["storage"].startswith("sqlite:///")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    pytest.importorskip("redis", reason="the redis client package is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_head_restart(local_cluster, poll_until, redis_url):
    local_cluster.add_node(num_cpus=1, storage=redis_url)
    _restart_with_existing_head(local_cluster, poll_until)


def _restart_with_existing_head(cluster, poll_until) -> None:
    """As above, with the head already added (for a storage chosen by the caller)."""
    far = cluster.add_node(num_cpus=2, resources={"far": 2})
    actorflow.init(address=cluster.address, namespace="bank")
    account = Account.options(name="main", resources={"far": 0.5}).remote()
    assert actorflow.get(account.deposit.remote(10), timeout=60) == 10
    pid = actorflow.get(account.pid.remote(), timeout=30)
    cluster.kill_gcs()
    cluster.restart_gcs()
    again = actorflow.get_actor("main")
    assert actorflow.get(again.deposit.remote(1), timeout=30) == 11
    assert actorflow.get(again.pid.remote(), timeout=30) == pid
    poll_until(
        lambda: far["node_id"] in {n["NodeID"] for n in actorflow.nodes() if n["Alive"]}, timeout=30
    )


def test_a_named_actor_of_a_driver_that_left_while_the_gcs_was_down_dies(local_cluster, poll_until):
    local_cluster.add_node(num_cpus=2)
    script = (
        f"import actorflow\n"
        f"actorflow.init(address={local_cluster.address!r}, namespace='n')\n"
        "@actorflow.remote\n"
        "class A:\n"
        "    def ping(self):\n"
        "        return 1\n"
        "a = A.options(name='orphan').remote()\n"
        "k = A.options(name='keeper', lifetime='detached').remote()\n"
        "assert actorflow.get([a.ping.remote(), k.ping.remote()]) == [1, 1]\n"
        "print('ready', flush=True)\n"
        "import sys; sys.stdin.read()\n"
    )
    env = dict(os.environ, ACTORFLOW_SESSION_ROOT=local_cluster.session_root)
    driver = subprocess.Popen(
        [os.sys.executable, "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout.readline().strip() == "ready"
        local_cluster.kill_gcs()
        driver.stdin.close()
        assert driver.wait(timeout=60) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    local_cluster.restart_gcs()
    actorflow.init(address=local_cluster.address, namespace="n")

    def orphan_gone() -> bool:
        try:
            actorflow.get_actor("orphan")
        except ValueError:
            return True
        return False

    poll_until(orphan_gone, timeout=60, message="the orphaned named actor outlived its driver")
    keeper = actorflow.get_actor("keeper")  # the same driver's detached actor lives on
    assert actorflow.get(keeper.ping.remote(), timeout=30) == 1
    actorflow.kill(keeper)


def test_sqlite_storage_round_trip(tmp_path):
    path = str(tmp_path / "gcs.sqlite")
    storage = open_storage(f"sqlite:///{path}")
    assert isinstance(storage, SqliteStorage)
    storage.put("actors", "a1", {"state": "ALIVE", "spec": {"blob": b"\x00\x01"}, "n": 3})
    storage.put("actors", "a1", {"state": "DEAD", "spec": {"blob": b"\x00\x01"}, "n": 4})
    storage.put("kv", "ns\x1fabcd", b"value")
    storage.put("kv", "ns\x1fdead", b"gone")
    storage.delete("kv", "ns\x1fdead")
    storage.close()
    reopened = open_storage(f"sqlite:///{path}")
    assert reopened.load() == {
        "actors": {"a1": {"state": "DEAD", "spec": {"blob": b"\x00\x01"}, "n": 4}},
        "kv": {"ns\x1fabcd": b"value"},
    }
    reopened.close()
    assert isinstance(open_storage(""), MemoryStorage)
    with pytest.raises(ValueError, match="unknown GCS storage"):
        open_storage("postgres://x")


@actorflow.remote(max_retries=3)
def plus_one(x: int) -> int:
    time.sleep(0.001)
    return x + 1


def test_gcs_killed_and_restarted_under_load(local_cluster):
    """Tasks and actor calls keep flowing while the GCS is killed and started again; every
    result arrives once, in order."""
    local_cluster.add_node(num_cpus=2)
    local_cluster.add_node(num_cpus=2)
    actorflow.init(address=local_cluster.address)
    account = Account.remote()
    actorflow.get(account.deposit.remote(0), timeout=60)
    refs = [plus_one.remote(i) for i in range(3000)]
    calls = [account.deposit.remote(1) for _ in range(300)]
    actorflow.wait(refs, num_returns=100, timeout=60)  # the load is flowing
    local_cluster.kill_gcs()
    more = [plus_one.remote(i) for i in range(3000, 3500)]  # submitted while it is down
    time.sleep(1.0)  # stays down for a while: a duration, not a synchronisation
    local_cluster.restart_gcs()
    assert actorflow.get(refs + more, timeout=150) == [i + 1 for i in range(3500)]
    assert actorflow.get(calls, timeout=60) == list(range(1, 301))
    after = Account.remote()  # and the control plane works again
    assert actorflow.get(after.deposit.remote(5), timeout=60) == 5


def test_a_gcs_that_stays_down_fails_control_calls_naming_it(local_cluster, monkeypatch):
    """Calls to live actors keep working without the GCS; what needs it (a name lookup, a new
    actor) waits out gcs_reconnect_seconds, then fails saying the GCS could not be reached."""
    monkeypatch.setenv("ACTORFLOW_GCS_RECONNECT_SECONDS", "1")
    local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    account = Account.options(name="kept").remote()
    assert actorflow.get(account.deposit.remote(3), timeout=60) == 3
    local_cluster.kill_gcs()
    assert actorflow.get(account.deposit.remote(1), timeout=30) == 4
    with pytest.raises(actorflow.exceptions.PeerUnreachableError, match=r"control store \(GCS\)"):
        actorflow.get_actor("kept")
    fresh = Account.remote()
    with pytest.raises(actorflow.exceptions.ActorDiedError, match=r"could not be created.*GCS"):
        actorflow.get(fresh.deposit.remote(1), timeout=60)


@actorflow.remote
class SlowStart:
    def __init__(self, marker: str) -> None:
        open(f"{marker}-{os.getpid()}", "w").close()
        time.sleep(2.0)  # still being created when the GCS dies

    def pid(self) -> int:
        return os.getpid()


def test_an_actor_being_created_when_the_gcs_dies_is_created_once_again(
    local_cluster, tmp_path, poll_until, process_gone
):
    """The restarted GCS creates it again, and ends the worker its predecessor had leased for
    it (no leaked process)."""
    local_cluster.add_node(num_cpus=2)
    actorflow.init(address=local_cluster.address)
    marker = str(tmp_path / "constructing")
    actor = SlowStart.remote(marker)
    first = poll_until(lambda: [p for p in os.listdir(tmp_path)], timeout=60)
    first_pid = int(first[0].rsplit("-", 1)[1])
    local_cluster.kill_gcs()
    local_cluster.restart_gcs()
    second_pid = actorflow.get(actor.pid.remote(), timeout=60)
    assert second_pid != first_pid
    poll_until(
        lambda: process_gone(first_pid),
        timeout=30,
        message="the worker leased for the first attempt was left running",
    )
