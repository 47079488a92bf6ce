"""The ``actorflow`` command line against a real cluster: ``start`` (head and joining node),
``status``, ``list nodes|actors|tasks|workers|objects``, ``stop``, run as subprocesses the way a
user runs them, in a session root of the test's own (ACTORFLOW_SESSION_ROOT). Every process a
test starts is ended by pid afterwards, even when the test fails."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import poll_until, process_gone

pytestmark = pytest.mark.timeout(60)


def no_memory(resources: dict) -> dict:
    """Resources without the memory every node offers (a share of this machine's RAM)."""
    return {k: v for k, v in resources.items() if k != "memory"}


class CliCluster:
    """Runs ``python -m actorflow.cli`` with ACTORFLOW_SESSION_ROOT set to a root of its own, and
    finds every process started for that root (nodes, the GCS, workers, drivers: they all carry
    ``ACTORFLOW_SESSION_ROOT=<root>`` in their environment) to end it by pid."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("ACTORFLOW_TOKEN", "ACTORFLOW_ADDRESS")
        }
        self.env["ACTORFLOW_SESSION_ROOT"] = self.root
        self.drivers: list[subprocess.Popen] = []

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "actorflow.cli", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, **kwargs: Any) -> str:
        done = self.run(*args, **kwargs)
        assert done.returncode == 0, f"actorflow {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--format", "json", **kwargs))

    # -- the cluster's files ---------------------------------------------------------------------

    def sessions(self) -> list[Path]:
        return sorted(
            p for p in Path(self.root).glob("session_*") if p.is_dir() and not p.is_symlink()
        )

    def head_session(self) -> Path:
        heads = [p for p in self.sessions() if (p / "node.json").exists()]
        assert len(heads) == 1, heads
        return heads[0]

    @property
    def gcs_address(self) -> str:
        """HOST:PORT of the head's GCS."""
        info = json.loads((self.head_session() / "node.json").read_text())
        return str(info["gcs_address"]).split("://")[-1]

    def node_files(self) -> list[dict[str, Any]]:
        """The info files of the node processes (the GCS's included, node_id "gcs")."""
        return [
            json.loads(f.read_text())
            for s in self.sessions()
            for f in sorted((s / "nodes").glob("*.json"))
        ]

    def token(self) -> str:
        return (self.head_session() / "token").read_text().strip()

    # -- processes -------------------------------------------------------------------------------

    def processes(self) -> set[int]:
        """Pids of the live processes started for this root (not the CLI runs, which are over)."""
        marker = f"ACTORFLOW_SESSION_ROOT={self.root}".encode()
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0") and not process_gone(int(entry)):
                        found.add(int(entry))
            except OSError:
                continue
        return found

    def driver(self, code: str, *args: str) -> subprocess.Popen:
        """A driver process running code (with sys.argv[1:] = args); it keeps running until its
        stdin is closed if the code waits on it."""
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.drivers.append(process)
        return process

    def cleanup(self) -> None:
        for process in self.drivers:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        for _ in range(3):  # what a killed process started meanwhile, too
            for pid in self.processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        poll_gone(self.processes, timeout=30)


def poll_gone(pids: Any, timeout: float = 20.0) -> None:
    """Wait until none of pids (a set, or a function giving one) runs."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p for p in (pids() if callable(pids) else pids) if not process_gone(p)}
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes still running after {timeout} s: {sorted(left)}")
        time.sleep(0.05)


# -- a two-node cluster, seen through the CLI -----------------------------------------------------

DRIVER = """
import json, os, sys, time
import actorflow

actorflow.init(address=sys.argv[1])

@actorflow.remote
class Keeper:
    def where(self):
        ctx = actorflow.get_runtime_context()
        return {"actor_id": ctx.get_actor_id(), "node_id": ctx.get_node_id(), "pid": os.getpid()}

@actorflow.remote(resources={"special": 1})
def busy(path):
    ctx = actorflow.get_runtime_context()
    with open(path + ".tmp", "w") as f:
        json.dump({"worker_id": ctx.get_worker_id(), "node_id": ctx.get_node_id(),
                   "pid": os.getpid(), "job_id": ctx.get_job_id()}, f)
    os.replace(path + ".tmp", path)
    time.sleep(300)

keeper = Keeper.options(name="keeper", namespace="cli-test", lifetime="detached").remote()
where = actorflow.get(keeper.where.remote(), timeout=60)
ref = actorflow.put(b"x" * 1_000_000)
task = busy.remote(sys.argv[2])
print(json.dumps({"actor": where, "object_id": ref.hex(),
                  "job_id": actorflow.get_runtime_context().get_job_id()}), flush=True)
sys.stdin.read()  # run until the test closes stdin
"""


@pytest.mark.timeout(180)
def test_start_status_list_stop(cli, tmp_path):
    out = cli.ok("start", "--head", "--port", "0", "--num-cpus", "2")
    gcs = cli.gcs_address
    assert f"actorflow start --address {gcs}" in out
    head = [n for n in cli.node_files() if n["node_id"] != "gcs"]
    assert len(head) == 1 and head[0]["is_head"]
    out = cli.ok("start", "--address", gcs, "--num-cpus", "1", "--resources", '{"special": 2}')
    assert "Started the node" in out
    nodes = {n["node_id"]: n for n in cli.node_files() if n["node_id"] != "gcs"}
    assert len(nodes) == 2
    head_id = head[0]["node_id"]
    (other_id,) = set(nodes) - {head_id}

    # Both nodes, their resources, the head.
    rows = cli.json("list", "nodes")
    assert [r["node_id"] for r in rows] == [head_id, other_id]  # the head first
    by_id = {r["node_id"]: r for r in rows}
    assert by_id[head_id]["is_head"] and not by_id[other_id]["is_head"]
    assert no_memory(by_id[head_id]["resources_total"]) == {"CPU": 2.0}
    assert no_memory(by_id[other_id]["resources_total"]) == {"CPU": 1.0, "special": 2.0}
    assert all(r["state"] == "ALIVE" and r["death_cause"] == "" for r in rows)
    assert {r["pid"] for r in rows} == {n["pid"] for n in nodes.values()}

    # A driver with a detached named actor, an object and a running task.
    busy_file = str(tmp_path / "busy.json")
    driver = cli.driver(DRIVER, gcs, busy_file)
    assert driver.stdout is not None and driver.stdin is not None
    line = driver.stdout.readline()
    assert line, f"the driver failed: {driver.stderr.read() if driver.stderr else ''}"
    made = json.loads(line)
    poll_until(
        lambda: os.path.exists(busy_file), timeout=30, interval=0.1, message="the busy task started"
    )
    with open(busy_file) as f:
        busy = json.load(f)
    assert busy["node_id"] == other_id  # the only node with "special"

    # status: used/total as the nodes report them in their heartbeats.
    def status_when_busy() -> dict | None:
        status = cli.json("status")
        used = status["resources"]["used"]
        return status if used.get("special") == 1.0 and used.get("CPU", 0) >= 1.0 else None

    status = poll_until(
        status_when_busy, timeout=30, interval=0.1, message="the busy task's resources show as used"
    )
    assert status["gcs_address"].endswith(gcs)
    assert no_memory(status["resources"]["total"]) == {"CPU": 3.0, "special": 2.0}
    assert status["resources"]["available"]["special"] == 1.0
    assert [n["node_id"] for n in status["nodes"]] == [head_id, other_id]
    assert status["actors"]["ALIVE"] >= 1
    assert status["tasks"]["task_leases"] >= 1
    assert status["tasks"]["actor_workers"] >= 1
    assert status["jobs"]["alive"] == 1
    table = cli.ok("status")
    assert head_id in table and other_id in table and "special: 1/2" in table
    assert "Actors: 1 ALIVE" in table

    actors = cli.json("list", "actors")
    keeper = [a for a in actors if a["name"] == "keeper"]
    assert len(keeper) == 1, actors
    assert keeper[0]["namespace"] == "cli-test" and keeper[0]["state"] == "ALIVE"
    assert keeper[0]["actor_id"] == made["actor"]["actor_id"]
    assert keeper[0]["node_id"] == made["actor"]["node_id"]
    assert keeper[0]["pid"] == made["actor"]["pid"]
    assert "keeper" in cli.ok("list", "actors")

    tasks = cli.json("list", "leases")
    mine = [t for t in tasks if t["worker_id"] == busy["worker_id"]]
    assert len(mine) == 1, tasks
    assert mine[0]["node_id"] == other_id and mine[0]["pid"] == busy["pid"]
    assert mine[0]["job_id"] in (None, busy["job_id"])
    assert made["actor"]["pid"] not in {t["pid"] for t in tasks}  # the actor's is no task lease

    workers = cli.json("list", "workers")
    hosts = {w["pid"]: w["actor_id"] for w in workers}
    assert hosts[made["actor"]["pid"]] == made["actor"]["actor_id"]
    assert hosts[busy["pid"]] == ""

    objects = cli.json("list", "objects")
    put = [o for o in objects if o["object_id"] == made["object_id"]]
    assert len(put) == 1, objects
    assert put[0]["size"] >= 1_000_000 and put[0]["where"] == "shared"
    assert made["object_id"] in cli.ok("list", "objects")

    # The driver leaves; its detached actor stays.
    driver.stdin.close()
    assert driver.wait(timeout=30) == 0
    keeper = poll_until(
        lambda: [
            a
            for a in cli.json("list", "actors", "--address", gcs)
            if a["name"] == "keeper" and a["state"] == "ALIVE"
        ],
        timeout=30,
        interval=0.1,
    )
    assert keeper[0]["pid"] == made["actor"]["pid"]
    # The driver reported its task events as it left: its actor call is listed, with its job.
    calls = cli.json("list", "tasks", "--name", "Keeper.where")
    assert [(c["state"], c["job_id"]) for c in calls] == [("FINISHED", made["job_id"])], calls
    assert calls[0]["actor_id"] == made["actor"]["actor_id"]

    # stop ends every process of the cluster: nodes, the GCS, workers.
    started = cli.processes()
    assert {n["pid"] for n in cli.node_files()} <= started
    assert made["actor"]["pid"] in started
    out = cli.ok("stop")
    assert "Stopped 3 actorflow node process(es)" in out
    poll_gone(started)
    done = cli.run("status")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "no running actorflow cluster" in done.stderr


def test_status_and_list_with_an_explicit_address_find_that_clusters_token(cli):
    # Two clusters on this machine: --address picks the token of the right session, not the
    # latest one's.
    cli.ok("start", "--head", "--port", "0", "--num-cpus", "1")
    first = cli.gcs_address
    first_session = cli.head_session()
    cli.ok("start", "--head", "--port", "0", "--num-cpus", "3")
    latest = Path(os.path.realpath(Path(cli.root) / "session_latest"))
    assert latest != first_session
    status = cli.json("status", "--address", first)
    assert no_memory(status["resources"]["total"]) == {"CPU": 1.0}
    assert no_memory(cli.json("status")["resources"]["total"]) == {"CPU": 3.0}  # the latest
    assert len(cli.json("list", "nodes", "--address", first)) == 1


def test_status_with_a_wrong_token_is_one_line_naming_the_token(cli):
    cli.ok("start", "--head", "--port", "0", "--num-cpus", "1")
    done = cli.run("status", "--address", cli.gcs_address, env={"ACTORFLOW_TOKEN": "00" * 32})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "token" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli.json("status", "--address", cli.gcs_address)["nodes"]  # still serving


def test_a_dead_node_shows_with_its_cause(cli):
    cli.ok("start", "--head", "--port", "0", "--num-cpus", "1")
    cli.ok("start", "--address", cli.gcs_address, "--num-cpus", "1")
    other = [n for n in cli.node_files() if n["node_id"] != "gcs" and not n["is_head"]][0]
    os.kill(other["pid"], signal.SIGKILL)
    dead = poll_until(
        lambda: [
            n
            for n in cli.json("list", "nodes")
            if n["node_id"] == other["node_id"] and not n["alive"]
        ],
        timeout=30,
        interval=0.1,
    )
    assert dead[0]["state"] == "DEAD" and dead[0]["death_cause"]
    assert dead[0]["workers"] is None
    table = cli.ok("status")
    assert "1 node(s) alive, 1 dead" in table and "DEAD (" in table
    status = cli.json("status")
    assert no_memory(status["resources"]["total"]) == {"CPU": 1.0}  # live nodes only


# -- no cluster, bad input, help -------------------------------------------------------------------


def test_status_and_list_with_no_cluster_say_so_in_one_line(cli):
    for args in (["status"], ["list", "nodes"], ["list", "actors", "--format", "json"]):
        done = cli.run(*args)
        assert done.returncode == 1, done
        assert done.stderr.count("\n") == 1, done.stderr
        assert "no running actorflow cluster found" in done.stderr
        assert done.stdout == ""
    done = cli.run("status", "--address", "127.0.0.1:1", env={"ACTORFLOW_TOKEN": "00" * 32})
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "no running actorflow cluster found at tcp://127.0.0.1:1" in done.stderr


@pytest.mark.parametrize("value", ["notjson", "[1, 2]", '{"a": '])
def test_start_with_bad_resources_is_a_clear_error(cli, value):
    done = cli.run("start", "--head", "--port", "0", "--resources", value)
    assert done.returncode != 0
    assert "--resources must be a JSON object" in done.stderr
    assert "Traceback" not in done.stderr
    assert not cli.processes() and not cli.node_files()


def test_bad_command_lines_exit_nonzero(cli):
    for args in (
        ["start"],
        ["start", "--head", "--address", "127.0.0.1:1"],
        ["list"],
        ["list", "bogus"],
        ["status", "--format", "yaml"],
        ["bogus"],
    ):
        done = cli.run(*args)
        assert done.returncode == 2, (args, done)
        assert "usage: actorflow" in done.stderr
    assert not cli.processes()


def test_start_without_a_token_for_a_remote_head_is_one_line(cli):
    done = cli.run("start", "--address", "127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "ACTORFLOW_TOKEN" in done.stderr


HELP = {
    ("start",): [
        "--head",
        "--address",
        "--port",
        "--host",
        "--num-cpus",
        "--num-gpus",
        "--resources",
        "--object-store-memory",
    ],
    ("stop",): ["--grace"],
    ("status",): ["--address", "--format", "resources used/total", "actors", "lease"],
    ("memory",): ["--address", "--format"],
    ("list",): ["nodes", "actors", "tasks", "leases", "workers", "objects"],
    ("list", "nodes"): ["--address", "--format", "dead"],
    ("list", "actors"): ["--address", "--format", "state"],
    ("list", "tasks"): ["--address", "--format", "--state", "--name", "--job", "--limit", "leases"],
    ("list", "leases"): ["--address", "--format", "leased to run tasks", "list tasks"],
    ("summary", "tasks"): ["--address", "--format", "state"],
    ("timeline",): ["--address", "--output", "Chrome trace"],
    ("list", "workers"): ["--address", "--format"],
    ("list", "objects"): ["--address", "--format"],
    (): ["start", "stop", "status", "list", "memory", "summary", "timeline"],
}


@pytest.mark.parametrize("command", list(HELP), ids=[" ".join(c) or "top" for c in HELP])
def test_help(cli, command):
    done = cli.run(*command, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for word in HELP[command]:
        assert word in text, (word, done.stdout)


# -- the pure parts: rows and tables from what the GCS and raylets said --------------------------


def test_status_of_a_view_counts_live_nodes_actors_and_leases():
    from actorflow._private.cluster.inspection import ClusterView
    from actorflow.util import state

    view = ClusterView(
        gcs_address="tcp://127.0.0.1:1",
        nodes=[
            {
                "node_id": "b",
                "address": "tcp://127.0.0.1:3",
                "alive": False,
                "pid": 3,
                "resources": {"CPU": 4.0},
                "available": {"CPU": 4.0},
                "death_cause": "no heartbeat for 30 s",
            },
            {
                "node_id": "a",
                "address": "tcp://127.0.0.1:2",
                "alive": True,
                "pid": 2,
                "is_head": True,
                "resources": {"CPU": 2.0, "GPU": 1.0},
                "available": {"CPU": 0.5, "GPU": 1.0},
            },
        ],
        actors=[
            {"actor_id": "x", "class_name": "C", "state": "ALIVE", "address": "tcp://127.0.0.1:5"},
            {
                "actor_id": "y",
                "class_name": "C",
                "state": "DEAD",
                "address": "",
                "death_cause": "killed",
            },
        ],
        jobs=[{"job_id": "1", "alive": True}, {"job_id": "2", "alive": False}],
        node_infos={
            "a": {
                "workers": [
                    {
                        "worker_id": "w1",
                        "pid": 11,
                        "state": "leased",
                        "address": "tcp://127.0.0.1:4",
                    },
                    {
                        "worker_id": "w2",
                        "pid": 12,
                        "state": "leased",
                        "address": "tcp://127.0.0.1:5",
                    },
                    {"worker_id": "w3", "pid": 13, "state": "idle", "address": "tcp://127.0.0.1:6"},
                ],
                "leases": 2,
                "queued_lease_requests": 3,
            }
        },
    )
    status = state.status_of(view)
    assert [n["node_id"] for n in status["nodes"]] == ["a", "b"]
    assert status["nodes"][0]["resources_used"] == {"CPU": 1.5, "GPU": 0.0}
    assert status["nodes"][1]["workers"] is None
    assert status["resources"] == {
        "total": {"CPU": 2.0, "GPU": 1.0},
        "used": {"CPU": 1.5, "GPU": 0.0},
        "available": {"CPU": 0.5, "GPU": 1.0},
    }
    assert status["actors"] == {"ALIVE": 1, "PENDING": 0, "RESTARTING": 0, "DEAD": 1}
    assert status["tasks"] == {
        "task_leases": 1,
        "actor_workers": 1,
        "queued_lease_requests": 3,
        "workers": 3,
    }
    assert status["jobs"] == {"alive": 1, "finished": 1}
    assert [t["worker_id"] for t in state.tasks_of(state.workers_of(view))] == ["w1"]
    actors = state.actors_of(view)
    assert actors[0]["node_id"] == "a" and actors[0]["pid"] == 12
    assert actors[1]["pid"] is None and actors[1]["death_cause"] == "killed"
    text = state.format_status(status)
    assert "1 node(s) alive, 1 dead" in text and "DEAD (no heartbeat for 30 s)" in text
    assert "CPU: 1.5/2" in text and "1 worker(s) leased to run tasks" in text
    table = state.format_table(state.workers_of(view), state.WORKER_COLUMNS)
    assert table.splitlines()[0].split()[:2] == ["WORKER", "ID"]
    assert len(table.splitlines()) == 4 and "?" in table  # job_id not reported: "?"


def test_start_head_again_on_the_port_of_a_dead_gcs_resumes_that_cluster(cli, tmp_path):
    """The GCS killed -9, `start --head --port P --storage ...` again: the same session and
    token, the tables reloaded, and the running node and detached actor still there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = f"sqlite:///{tmp_path / 'tables.sqlite'}"
    cli.ok("start", "--head", "--port", str(port), "--num-cpus", "1", "--storage", storage)
    session, token = cli.head_session(), cli.token()
    keeper = cli.driver(
        """
        import sys, actorflow
        actorflow.init(address=sys.argv[1])

        @actorflow.remote
        class Keeper:
            def ping(self):
                return "pong"

        Keeper.options(name="keeper", namespace="resume", lifetime="detached").remote()
        print("made", flush=True)
    """,
        f"127.0.0.1:{port}",
    )
    assert keeper.wait(timeout=60) == 0, keeper.stderr.read()
    gcs = [n for n in cli.node_files() if n["node_id"] == "gcs"][0]
    os.kill(gcs["pid"], signal.SIGKILL)
    poll_until(lambda: process_gone(gcs["pid"]), timeout=30)
    out = cli.ok("start", "--head", "--port", str(port), "--num-cpus", "1", "--storage", storage)
    assert f"tables in {storage}" in out and "Resumed the cluster" in out
    assert len([n for n in cli.node_files() if n.get("is_head") and n["node_id"] != "gcs"]) == 1
    assert cli.head_session() == session and cli.token() == token  # the same cluster
    status = poll_until(lambda: (s := cli.json("status"))["nodes"] and s, timeout=30, interval=0.1)
    assert any(a["name"] == "keeper" and a["state"] == "ALIVE" for a in cli.json("list", "actors"))
    assert len([n for n in status["nodes"] if n["alive"]]) >= 1
