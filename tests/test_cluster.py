"""A cluster of several node processes on this machine: drivers that join it with
init(address=...), scheduling over its nodes, and what its nodes' deaths do."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time

import pytest

import actorflow
from actorflow import exceptions
from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(120)


@actorflow.remote
def node_of() -> str:
    return actorflow.get_runtime_context().get_node_id()


@actorflow.remote
def slow_node_of(seconds: float) -> str:
    time.sleep(seconds)
    return actorflow.get_runtime_context().get_node_id()


@actorflow.remote
class Where:
    def node(self) -> str:
        return actorflow.get_runtime_context().get_node_id()


def run_driver(cluster, code: str, timeout: float = 60) -> str:
    """Run code as a second driver process joined to the cluster; its stdout."""
    env = dict(os.environ, ACTORFLOW_SESSION_ROOT=cluster.session_root)
    script = f"import actorflow\nactorflow.init(address={cluster.address!r})\n" + textwrap.dedent(
        code
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"driver failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_driver_joins_by_address_and_auto(local_cluster):
    head = local_cluster.add_node(num_cpus=2)
    local_cluster.add_node(num_cpus=1)
    info = actorflow.init(address=local_cluster.address)
    assert info["node_id"] == head["node_id"]
    assert actorflow.cluster_resources()["CPU"] == 3.0
    assert len([n for n in actorflow.nodes() if n["Alive"]]) == 2
    assert actorflow.get(node_of.remote(), timeout=60) in {
        n["node_id"] for n in local_cluster.nodes
    }
    actorflow.shutdown()
    out = run_driver(local_cluster, "print(actorflow.get_runtime_context().get_node_id())")
    assert out.strip() == head["node_id"]
    env_auto = dict(os.environ, ACTORFLOW_SESSION_ROOT=local_cluster.session_root)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import actorflow; actorflow.init(address='auto'); "
            "print(actorflow.cluster_resources()['CPU'])",
        ],
        env=env_auto,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"


def test_init_with_address_refuses_node_options(local_cluster):
    local_cluster.add_node(num_cpus=1)
    with pytest.raises(ValueError, match="num_cpus"):
        actorflow.init(address=local_cluster.address, num_cpus=2)
    assert not actorflow.is_initialized()


def test_init_with_no_cluster_there_is_a_clear_error(local_cluster, unused_tcp_port=None):
    local_cluster.add_node(num_cpus=1)
    host, port = local_cluster.address.rsplit(":", 1)
    with pytest.raises(ConnectionError, match="no actorflow cluster answers"):
        actorflow.init(address=f"{host}:1")
    assert not actorflow.is_initialized()


def test_wrong_token_is_an_authentication_error_at_init(local_cluster, monkeypatch):
    local_cluster.add_node(num_cpus=1)
    monkeypatch.setenv("ACTORFLOW_TOKEN", "00" * 32)
    with pytest.raises(exceptions.AuthenticationError, match="token"):
        actorflow.init(address=local_cluster.address)
    assert not actorflow.is_initialized()


def test_spread_uses_every_node(local_cluster):
    nodes = [local_cluster.add_node(num_cpus=2) for _ in range(3)]
    actorflow.init(address=local_cluster.address)
    spread = slow_node_of.options(scheduling_strategy="SPREAD")
    seen = set(actorflow.get([spread.remote(0.2) for _ in range(9)], timeout=90))
    assert seen == {n["node_id"] for n in nodes}
    actors = [Where.options(scheduling_strategy="SPREAD").remote() for _ in range(3)]
    assert {actorflow.get(a.node.remote(), timeout=60) for a in actors} == seen


def test_custom_resource_pins_work_to_its_node(local_cluster):
    local_cluster.add_node(num_cpus=2)
    special = local_cluster.add_node(num_cpus=2, resources={"special": 1})
    actorflow.init(address=local_cluster.address)
    pinned = node_of.options(resources={"special": 1})
    assert set(actorflow.get([pinned.remote() for _ in range(4)], timeout=60)) == {
        special["node_id"]
    }
    actor = Where.options(resources={"special": 0.5}).remote()
    assert actorflow.get(actor.node.remote(), timeout=60) == special["node_id"]


def test_work_spills_to_a_node_with_free_cpus(local_cluster):
    head = local_cluster.add_node(num_cpus=1)
    other = local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    seen = set(actorflow.get([slow_node_of.remote(1.0) for _ in range(4)], timeout=90))
    assert seen == {head["node_id"], other["node_id"]}


def test_node_affinity_hard_and_soft(local_cluster):
    local_cluster.add_node(num_cpus=1)
    other = local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    hard = NodeAffinitySchedulingStrategy(other["node_id"], soft=False)
    assert set(
        actorflow.get(
            [node_of.options(scheduling_strategy=hard).remote() for _ in range(3)], timeout=60
        )
    ) == {other["node_id"]}
    actor = Where.options(scheduling_strategy=hard).remote()
    assert actorflow.get(actor.node.remote(), timeout=60) == other["node_id"]
    gone = NodeAffinitySchedulingStrategy("ffffffffffffffff", soft=False)
    with pytest.raises(exceptions.TaskUnschedulableError, match="ffffffffffffffff"):
        actorflow.get(node_of.options(scheduling_strategy=gone).remote(), timeout=60)
    soft = NodeAffinitySchedulingStrategy("ffffffffffffffff", soft=True)
    assert actorflow.get(node_of.options(scheduling_strategy=soft).remote(), timeout=60)


def test_infeasible_anywhere_fails_at_once_naming_the_request(local_cluster):
    local_cluster.add_node(num_cpus=1)
    local_cluster.add_node(num_cpus=2)
    actorflow.init(address=local_cluster.address)
    with pytest.raises(exceptions.TaskUnschedulableError, match="CPU: 3"):
        actorflow.get(node_of.options(num_cpus=3).remote(), timeout=30)
    with pytest.raises(exceptions.ActorflowError, match="nope"):
        actor = Where.options(resources={"nope": 1}).remote()
        actorflow.get(actor.node.remote(), timeout=30)


def test_gpu_tasks_see_their_gpus_in_cuda_visible_devices(local_cluster):
    local_cluster.add_node(num_cpus=4, num_gpus=2)
    actorflow.init(address=local_cluster.address)

    @actorflow.remote(num_gpus=1)
    def visible() -> tuple:
        time.sleep(0.5)
        return os.environ.get("CUDA_VISIBLE_DEVICES"), actorflow.get_gpu_ids()

    @actorflow.remote(num_gpus=0)
    def none_visible() -> str | None:
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    both = actorflow.get([visible.remote(), visible.remote()], timeout=60)
    assert sorted(v for v, _ in both) == ["0", "1"]
    assert sorted(ids[0] for _, ids in both) == [0, 1]
    assert actorflow.get(none_visible.remote(), timeout=60) == ""

    @actorflow.remote(num_gpus=2)
    class Trainer:
        def gpus(self) -> str | None:
            return os.environ.get("CUDA_VISIBLE_DEVICES")

    assert actorflow.get(Trainer.remote().gpus.remote(), timeout=60) == "0,1"


def test_detached_actor_outlives_its_driver_and_named_one_dies_with_it(local_cluster):
    local_cluster.add_node(num_cpus=2)
    run_driver(
        local_cluster,
        """
        @actorflow.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def add(self):
                self.n += 1
                return self.n
        kept = Counter.options(name="kept", namespace="shared", lifetime="detached").remote()
        gone = Counter.options(name="gone", namespace="shared").remote()
        print(actorflow.get(kept.add.remote()), actorflow.get(gone.add.remote()))
    """,
    )
    actorflow.init(address=local_cluster.address, namespace="shared")
    kept = actorflow.get_actor("kept")
    assert actorflow.get(kept.add.remote(), timeout=30) == 2

    def named_gone() -> bool:
        try:
            actorflow.get_actor("gone")
        except ValueError:
            return True
        return False

    deadline = time.monotonic() + 30
    while not named_gone():
        assert time.monotonic() < deadline, "the non-detached actor outlived its driver"
        time.sleep(0.05)
    actorflow.kill(kept)


def test_namespaces_scope_names_per_job(local_cluster):
    local_cluster.add_node(num_cpus=2)
    run_driver(
        local_cluster,
        """
        @actorflow.remote
        class A:
            def ping(self):
                return "pong"
        A.options(name="svc", namespace="team-a", lifetime="detached").remote()
        print(actorflow.get(actorflow.get_actor("svc", namespace="team-a").ping.remote()))
    """,
    )
    actorflow.init(address=local_cluster.address, namespace="team-b")
    with pytest.raises(ValueError, match="svc"):
        actorflow.get_actor("svc")
    svc = actorflow.get_actor("svc", namespace="team-a")
    assert actorflow.get(svc.ping.remote(), timeout=30) == "pong"
    actorflow.kill(svc)


# -- node failure ---------------------------------------------------------------------------------


def _alive_node_ids() -> set[str]:
    return {n["NodeID"] for n in actorflow.nodes() if n["Alive"]}


def test_killed_node_is_detected_and_its_tasks_retried_elsewhere(
    local_cluster, poll_until, tmp_path
):
    head = local_cluster.add_node(num_cpus=1)
    doomed = local_cluster.add_node(num_cpus=2)
    actorflow.init(address=local_cluster.address)

    @actorflow.remote(max_retries=2)
    def wait_then_report(marker: str, seconds: float) -> str:
        node = actorflow.get_runtime_context().get_node_id()
        with open(f"{marker}-{node}-{os.getpid()}", "w"):
            pass
        time.sleep(seconds)
        return node

    on_doomed = NodeAffinitySchedulingStrategy(doomed["node_id"], soft=True)
    marker = str(tmp_path / "started")
    refs = [
        wait_then_report.options(scheduling_strategy=on_doomed).remote(marker, 3.0)
        for _ in range(2)
    ]
    poll_until(
        lambda: len([p for p in os.listdir(tmp_path) if doomed["node_id"] in p]) == 2,
        timeout=30,
        message="the tasks never started on the doomed node",
    )
    local_cluster.kill_node(doomed)
    poll_until(
        lambda: doomed["node_id"] not in _alive_node_ids(),
        timeout=30,
        message="the killed node is still listed alive",
    )
    dead = [n for n in actorflow.nodes() if n["NodeID"] == doomed["node_id"]][0]
    assert dead["DeathCause"]
    assert actorflow.get(refs, timeout=60) == [head["node_id"], head["node_id"]]


def test_actor_on_a_killed_node_restarts_elsewhere_or_dies_naming_the_node(
    local_cluster, poll_until
):
    head = local_cluster.add_node(num_cpus=2)
    doomed = local_cluster.add_node(num_cpus=2)
    actorflow.init(address=local_cluster.address)
    on_doomed = NodeAffinitySchedulingStrategy(doomed["node_id"], soft=True)
    phoenix = Where.options(scheduling_strategy=on_doomed, max_restarts=1).remote()
    mortal = Where.options(scheduling_strategy=on_doomed).remote()
    assert actorflow.get([phoenix.node.remote(), mortal.node.remote()], timeout=60) == [
        doomed["node_id"],
        doomed["node_id"],
    ]
    local_cluster.kill_node(doomed)
    poll_until(lambda: doomed["node_id"] not in _alive_node_ids(), timeout=30)

    def restarted() -> bool:
        try:
            return actorflow.get(phoenix.node.remote(), timeout=30) == head["node_id"]
        except exceptions.ActorError:
            return False

    poll_until(restarted, timeout=60, message="the actor did not restart on the live node")
    with pytest.raises(exceptions.ActorDiedError, match=doomed["node_id"]):
        actorflow.get(mortal.node.remote(), timeout=60)


def test_silent_node_is_marked_dead_after_missed_heartbeats(
    local_cluster, poll_until, tmp_path, descendants
):
    """A machine that stops answering (SIGSTOP on its node and workers: every connection stays
    open) is declared dead after node_timeout_seconds, its tasks are retried elsewhere, and
    the node is told to exit when it comes back."""
    head = local_cluster.add_node(num_cpus=1, env={"ACTORFLOW_NODE_TIMEOUT_SECONDS": "2"})
    frozen = local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    assert frozen["node_id"] in _alive_node_ids()

    @actorflow.remote(max_retries=1)
    def mark_then_wait(marker: str) -> str:
        open(f"{marker}-{actorflow.get_runtime_context().get_node_id()}", "w").close()
        time.sleep(2.0)
        return actorflow.get_runtime_context().get_node_id()

    marker = str(tmp_path / "started")
    on_frozen = NodeAffinitySchedulingStrategy(frozen["node_id"], soft=True)
    ref = mark_then_wait.options(scheduling_strategy=on_frozen).remote(marker)
    poll_until(lambda: os.path.exists(f"{marker}-{frozen['node_id']}"), timeout=30)
    machine = [frozen["pid"], *descendants(frozen["pid"])]
    for pid in machine:
        os.kill(pid, __import__("signal").SIGSTOP)
    try:
        poll_until(
            lambda: frozen["node_id"] not in _alive_node_ids(),
            timeout=30,
            message="the silent node was never marked dead",
        )
        dead = [n for n in actorflow.nodes() if n["NodeID"] == frozen["node_id"]][0]
        assert "heartbeat" in dead["DeathCause"]
        assert actorflow.get(ref, timeout=60) == head["node_id"]
    finally:
        # Workers first: once the node runs again it may exit at once, and its workers end
        # with it (so one may be gone by the time it would be resumed).
        for pid in reversed(machine):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, __import__("signal").SIGCONT)
    # Back, it learns it was declared dead and exits on its own, with a code that says it died
    # (1, not 0: an orchestrator restarts it).
    assert frozen["popen"].wait(timeout=30) == 1
