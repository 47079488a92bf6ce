"""What an orchestrator sees of a node: ``actorflow start --block`` in the foreground with an exit
code that says how the node ended, SIGTERM draining the node (running tasks finish, nothing new
is leased there, tasks still running after the grace period are retried elsewhere), and
``/healthz`` on the node's metrics port. Real processes, every one ended by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import actorflow
from actorflow.util import state
from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(150)


def healthz(metrics_address: str) -> tuple[int, dict]:
    """The status code and JSON body of a node's /healthz."""
    try:
        with urllib.request.urlopen(f"http://{metrics_address}/healthz", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _node_files(root: Path) -> list[dict]:
    found = []
    for path in root.glob("session_*/nodes/*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass  # being written
    return found


def _start_blocking(root: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, ACTORFLOW_SESSION_ROOT=str(root))
    env.pop("ACTORFLOW_TOKEN", None)
    env.pop("ACTORFLOW_TOKEN_FILE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "actorflow.cli", "start", *args, "--block"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _started_pids(root: Path) -> list[int]:
    return [int(info["pid"]) for info in _node_files(root) if info.get("pid")]


def test_block_exit_codes_token_file_and_drain_on_sigterm(
    tmp_path, poll_until, process_gone, monkeypatch
):
    """A head and a node in the foreground: the node joins with --token-file; SIGTERM drains
    it and it exits 0; a head whose node is killed exits non-zero (128 + the signal) and
    stops its GCS."""
    root = tmp_path / "root"
    token_file = tmp_path / "token"
    token_file.write_text(os.urandom(32).hex() + "\n")
    token_file.chmod(0o600)
    monkeypatch.delenv("ACTORFLOW_TOKEN", raising=False)
    monkeypatch.setenv("ACTORFLOW_TOKEN_FILE", str(token_file))  # how state.* finds it here
    head = _start_blocking(
        root, "--head", "--port", "0", "--num-cpus", "1", "--token-file", str(token_file)
    )
    node = None
    pids: list[int] = []
    try:
        infos = poll_until(
            lambda: [i for i in _node_files(root) if i.get("is_head") and not i.get("gcs")],
            timeout=60,
            message="the head's node did not start",
        )
        gcs_info = poll_until(lambda: [i for i in _node_files(root) if i.get("gcs")], timeout=60)[0]
        pids = _started_pids(root)
        address = gcs_info["gcs_address"].split("://")[-1]
        # The session's token is the one in the file, not a new one.
        session = Path(gcs_info["session_dir"])
        assert (session / "token").read_text().strip() == token_file.read_text().strip()
        # A node of another session root (as on another machine): the file is its only token.
        other = tmp_path / "other"
        node = _start_blocking(
            other, "--address", address, "--num-cpus", "1", "--token-file", str(token_file)
        )
        joined = poll_until(lambda: _node_files(other), timeout=60, message="no node joined")[0]
        pids += [int(joined["pid"])]
        with open(f"/proc/{joined['pid']}/environ", "rb") as f:
            assert b"ACTORFLOW_TOKEN" not in f.read()  # it read the file, nothing else
        poll_until(
            lambda: len([n for n in state.node_rows(address) if n["alive"]]) == 2, timeout=30
        )
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0, node.stdout.read() if node.stdout else ""
        assert process_gone(int(joined["pid"]))
        row = next(n for n in state.node_rows(address) if n["node_id"] == joined["node_id"])
        assert not row["alive"] and "drained" in row["death_cause"]
        # The head's node dies: --block says so with a non-zero code, and ends the GCS.
        os.kill(int(infos[0]["pid"]), signal.SIGKILL)
        assert head.wait(timeout=60) == 128 + signal.SIGKILL
        out = head.stdout.read() if head.stdout else ""
        assert "died" in out, out
        poll_until(lambda: process_gone(int(gcs_info["pid"])), timeout=30)
    finally:
        for process in (head, node):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for pid in pids:
            _kill(pid)


def test_block_rejects_a_bad_token_file(tmp_path):
    bad = tmp_path / "token"
    bad.write_text("not hex")
    done = subprocess.run(
        [sys.executable, "-m", "actorflow.cli", "start", "--head", "--port", "0"]
        + ["--token-file", str(bad), "--block"],
        env=dict(os.environ, ACTORFLOW_SESSION_ROOT=str(tmp_path / "root")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "does not hold a hex string" in done.stderr
    assert not _node_files(tmp_path / "root")  # nothing was started


@actorflow.remote(max_retries=3)
def held(gate: str, started: str) -> str:
    """Runs until the file gate exists (or 60 s), on the node it was placed on."""
    Path(started).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    return actorflow.get_runtime_context().get_node_id()


@actorflow.remote(max_retries=3)
def stuck_there(node_id: str, started: str) -> str:
    """Never finishes on node node_id (until killed); returns at once anywhere else."""
    here = actorflow.get_runtime_context().get_node_id()
    if here == node_id:
        Path(started).touch()
        time.sleep(120)
    return here


@actorflow.remote
def node_of() -> str:
    return actorflow.get_runtime_context().get_node_id()


def _soft_to(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id, soft=True)


def test_sigterm_drain_lets_running_tasks_finish_and_leases_go_elsewhere(
    tmp_path, poll_until, local_cluster
):
    cluster = local_cluster
    head = cluster.add_node(num_cpus=1)
    leaving = cluster.add_node(num_cpus=2, drain_grace_seconds=60)
    actorflow.init(address=cluster.address)
    assert (
        actorflow.get(
            node_of.options(scheduling_strategy=_soft_to(leaving["node_id"])).remote(),
            timeout=60,
        )
        == leaving["node_id"]
    )
    gate, started = tmp_path / "gate", tmp_path / "started"
    running = held.options(scheduling_strategy=_soft_to(leaving["node_id"])).remote(
        str(gate), str(started)
    )
    poll_until(started.exists, timeout=60, message="the task did not start")
    assert healthz(leaving["metrics_address"])[0] == 200
    leaving["popen"].send_signal(signal.SIGTERM)
    code, body = poll_until(
        lambda: (lambda a: a if a[0] == 503 else None)(healthz(leaving["metrics_address"])),
        timeout=30,
        message="/healthz did not turn 503 while draining",
    )
    assert body["draining"] and "draining" in body["reason"]
    poll_until(lambda: any(n["draining"] for n in state.node_rows(cluster.address)), timeout=30)
    # No new lease there: work that would prefer that node goes to the head instead.
    later = [
        node_of.options(scheduling_strategy=_soft_to(leaving["node_id"])).remote() for _ in range(3)
    ]
    assert set(actorflow.get(later, timeout=60)) == {head["node_id"]}
    assert leaving["popen"].poll() is None  # still running its task
    gate.touch()
    assert actorflow.get(running, timeout=60) == leaving["node_id"]  # it finished there
    assert leaving["popen"].wait(timeout=60) == 0
    row = next(n for n in state.node_rows(cluster.address) if n["node_id"] == leaving["node_id"])
    assert not row["alive"] and "drained" in row["death_cause"]


def test_tasks_still_running_after_the_grace_period_are_retried_elsewhere(
    tmp_path, poll_until, local_cluster
):
    cluster = local_cluster
    head = cluster.add_node(num_cpus=1)
    leaving = cluster.add_node(num_cpus=1, drain_grace_seconds=1)
    actorflow.init(address=cluster.address)
    started = tmp_path / "started"
    ref = stuck_there.options(scheduling_strategy=_soft_to(leaving["node_id"])).remote(
        leaving["node_id"], str(started)
    )
    poll_until(started.exists, timeout=60, message="the task did not start")
    leaving["popen"].send_signal(signal.SIGTERM)
    assert leaving["popen"].wait(timeout=60) == 0
    assert actorflow.get(ref, timeout=60) == head["node_id"]


def test_healthz_follows_the_gcs(tmp_path, poll_until, local_cluster):
    cluster = local_cluster
    head = cluster.add_node(num_cpus=1)
    code, body = healthz(head["metrics_address"])
    assert code == 200 and body["status"] == "ok" and body["registered"]
    assert body["node_id"] == head["node_id"]
    assert cluster.gcs is not None
    gcs_code, gcs_body = healthz(cluster.gcs["metrics_address"])
    assert gcs_code == 200, gcs_body
    cluster.kill_gcs()
    code, body = poll_until(
        lambda: (lambda a: a if a[0] == 503 else None)(healthz(head["metrics_address"])),
        timeout=30,
        message="/healthz stayed 200 with the GCS gone",
    )
    assert "GCS is unreachable" in body["reason"], body
    cluster.restart_gcs()
    poll_until(
        lambda: healthz(head["metrics_address"])[0] == 200,
        timeout=60,
        message="/healthz did not come back with the GCS",
    )
