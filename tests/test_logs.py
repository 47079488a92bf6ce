"""Worker logs read through the cluster: ``actorflow.util.state.list_logs`` / ``get_log`` and
``actorflow logs``, on a two-node LocalCluster whose actor lives on the node that is not the
head; and the node's log service on its own (node/logs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
from helpers import poll_until

import actorflow
from actorflow._private import errors
from actorflow._private.node.logs import LogService, _tail
from actorflow.util import state


@actorflow.remote(resources={"far": 1})
class Speaker:
    def say(self, text):
        print(text, flush=True)
        return os.getpid()


@actorflow.remote(resources={"far": 1})
def shout(text):
    print(text, flush=True)
    return os.getpid()


CLI = [sys.executable, "-m", "actorflow.cli"]


def _cli(*args, env):
    return subprocess.run(
        [*CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(120)
def test_logs_of_an_actor_and_a_task_on_another_node(local_cluster, tmp_path):
    local_cluster.add_node(num_cpus=1)
    far = local_cluster.add_node(num_cpus=1, resources={"far": 2})
    actorflow.init(address=local_cluster.address)
    speaker = Speaker.options(name="speaker").remote()
    pid = actorflow.get(speaker.say.remote("line one"))
    actorflow.get(speaker.say.remote("line two"))
    ref = shout.remote("a task speaks")
    task_pid = actorflow.get(ref)
    actor = next(a for a in state.actor_rows() if a["name"] == "speaker")
    assert actor["node_id"] == far["node_id"] and actor["pid"] == pid

    # The far node lists its workers' logs (the actor's among them); the head's has none of it.
    listed = state.list_logs(node_id=far["node_id"])
    rows = state.log_rows(node_id=far["node_id"])
    mine = [r for r in rows if r["pid"] == pid]
    assert len(mine) == 1 and mine[0]["kind"] == "worker" and mine[0]["alive"]
    assert mine[0]["filename"] in listed["worker"]
    assert any(r["kind"] == "node" for r in rows)  # the node process's own log
    head_rows = state.log_rows(node_id=local_cluster.head["node_id"])
    assert pid not in {r["pid"] for r in head_rows}

    # By actor id, by name, by pid, by file name; tail.
    text = poll_until(
        lambda: (
            "line two" in "".join(state.get_log(actor_id=actor["actor_id"]))
            and "".join(state.get_log(actor_id=actor["actor_id"]))
        ),
        timeout=15,
    )
    assert "line one\n" in text and "line two\n" in text
    assert "line two" in "".join(state.get_log(actor_id="speaker"))
    assert "".join(state.get_log(actor_id="speaker", tail=1)) == "line two\n"
    assert "line one" in "".join(state.get_log(pid=pid))
    by_file = "".join(state.get_log(node_id=far["node_id"], filename=mine[0]["filename"]))
    assert "line one" in by_file
    # By task: the worker that ran its latest attempt.
    task_id = ref.task_id()
    task_log = poll_until(
        lambda: state.get_task(task_id) and "".join(state.get_log(task_id=task_id)), timeout=15
    )
    assert "a task speaks" in task_log
    assert task_pid in {r["pid"] for r in state.log_rows(node_id=far["node_id"])}

    # follow: what is written after the first read comes too (the first piece, the last line,
    # says the reader has started).
    pieces = state.get_log(actor_id="speaker", follow=True, tail=1, _interval=0.05)
    seen: list[str] = []
    started = threading.Event()

    def read() -> None:
        for piece in pieces:
            seen.append(piece)
            started.set()
            if "later" in piece:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(timeout=30) and seen == ["line two\n"]
    actorflow.get(speaker.say.remote("later"))
    reader.join(timeout=30)
    assert not reader.is_alive() and "".join(seen) == "line two\nlater\n"

    # The command line, in a session root of its own (nothing of the cluster's on its disk):
    # the cluster's address and token only.
    token = local_cluster.head["session_dir"] + "/token"
    env = {k: v for k, v in os.environ.items() if k != "ACTORFLOW_ADDRESS"}
    env["ACTORFLOW_SESSION_ROOT"] = str(tmp_path / "elsewhere")
    env["ACTORFLOW_TOKEN"] = open(token).read().strip()
    address = ["--address", local_cluster.address]
    done = _cli("logs", *address, "--actor", "speaker", "--tail", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "line two\nlater\n"
    done = _cli("logs", *address, "--task", task_id, env=env)
    assert done.returncode == 0 and "a task speaks" in done.stdout, done.stderr
    done = _cli("logs", *address, "--node", far["node_id"][:6], "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    assert {r["filename"] for r in json.loads(done.stdout)} == {
        r["filename"] for r in state.log_rows(node_id=far["node_id"])
    }
    # follow with the command line, ended by the test (by its pid).
    follower = subprocess.Popen(
        [*CLI, "logs", *address, "--actor", "speaker", "--follow", "--tail", "1"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "later\n"  # it has started
        actorflow.get(speaker.say.remote("followed"))
        assert follower.stdout.readline() == "followed\n"
    finally:
        follower.kill()
        follower.wait(timeout=30)
        if follower.stdout is not None:
            follower.stdout.close()

    # A dead actor's log is still there (its node keeps the exited workers' logs).
    actorflow.kill(speaker)
    poll_until(
        lambda: (
            next(a for a in state.actor_rows() if a["actor_id"] == actor["actor_id"])["state"]
            == "DEAD"
        ),
        timeout=15,
    )
    assert "line one" in "".join(state.get_log(actor_id=actor["actor_id"]))
    assert not next(r for r in state.log_rows(node_id=far["node_id"]) if r["pid"] == pid)["alive"]

    # Clear errors.
    with pytest.raises(ValueError, match="no actor with the id or name 'nobody'"):
        list(state.get_log(actor_id="nobody"))
    with pytest.raises(ValueError, match="is not a live node"):
        state.log_rows(node_id="ffffffff")
    with pytest.raises(ValueError, match="no log file '../token'"):
        list(state.get_log(node_id=far["node_id"], filename="../token"))
    done = _cli("logs", *address, "--actor", "nobody", env=env)
    assert done.returncode == 1 and "no actor with the id or name 'nobody'" in done.stderr


# -- the node's log service on its own ------------------------------------------------------------


def _service(tmp_path, **workers):
    pool = SimpleNamespace(workers={}, exited=[])
    for name, (text, alive) in workers.items():
        path = tmp_path / f"worker-{name}.log"
        path.write_bytes(text)
        record = SimpleNamespace(
            worker_id=name, log_path=str(path), pid=len(name), state="idle" if alive else "dead"
        )
        (pool.workers.__setitem__(name, record) if alive else pool.exited.append(record))
    return LogService(pool)


def test_log_service_lists_and_reads_only_its_files(tmp_path):
    (tmp_path / "token").write_text("secret")
    service = _service(tmp_path, a=(b"one\ntwo\nthree\n", True), bb=(b"gone\n", False))
    rows = {r["filename"]: r for r in service.handle_list_logs([], None)}
    assert set(rows) == {"worker-a.log", "worker-bb.log"}
    assert rows["worker-a.log"]["alive"] and not rows["worker-bb.log"]["alive"]
    assert rows["worker-a.log"]["size"] == 14
    assert [r["filename"] for r in service.handle_list_logs(["*-bb.*"], None)] == ["worker-bb.log"]
    read = service.handle_read_log(["worker-a.log", 2, 0, 1 << 20], None)
    assert read["data"] == b"two\nthree\n" and read["offset"] == 14
    assert (
        service.handle_read_log(["worker-a.log", -1, 4, 1 << 20], None)["data"] == b"two\nthree\n"
    )
    assert service.handle_read_log(["worker-a.log", -1, 4, 3], None)["offset"] == 7
    for name in ("token", "../token", str(tmp_path / "token"), "worker-c.log"):
        with pytest.raises(errors.ActorflowError, match="no log file"):
            service.handle_read_log([name, -1, 0, 100], None)


def test_tail_counts_lines_from_the_end(tmp_path):
    path = tmp_path / "f"
    for data, lines, expected in [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\n", 5, b"a\nb\n"),
        (b"a\nb\n", 0, b""),
        (b"", 3, b""),
    ]:
        path.write_bytes(data)
        with open(path, "rb") as f:
            assert _tail(f, len(data), lines, 1 << 20) == expected, (data, lines)
    path.write_bytes(b"x" * 50 + b"\nlast\n")
    with open(path, "rb") as f:
        assert _tail(f, 56, 10, 20) == b"last\n"  # only whole lines of the last 20 bytes
