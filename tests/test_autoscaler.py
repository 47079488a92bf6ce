"""actorflow.autoscaler: the policy on plain data, the loop end to end with LocalProvider (work
that needs two more nodes brings them, finishes, and they go once idle), the pending demand in
the state API and metrics, and KubernetesProvider through the real kubernetes client against a
fake API server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

import actorflow
from actorflow.autoscaler import (
    Autoscaler,
    KubernetesProvider,
    LocalProvider,
    Policy,
    WorkerState,
    decide,
)
from actorflow.util import state

# -- the policy -----------------------------------------------------------------------------------


def _node(node_id: str, available: dict, **extra: Any) -> dict:
    row = {
        "node_id": node_id,
        "available": available,
        "idle": False,
        "idle_seconds": 0.0,
        "is_head": False,
        "draining": "",
        "hosts_actors": False,
    }
    row.update(extra)
    return row


def _demand(pending=(), infeasible=(), nodes=()) -> dict:
    return {
        "pending": [{"shape": s, "count": n, "kind": "task"} for s, n in pending],
        "infeasible": [{"shape": s, "count": n, "kind": "task"} for s, n in infeasible],
        "nodes": list(nodes),
    }


def test_policy_packs_demand_into_free_then_starting_then_new_nodes():
    policy = Policy({"CPU": 2}, max_workers=10)
    head = _node("h", {"CPU": 1}, is_head=True)
    # 5 one-CPU requests: 1 fits the head's free CPU, 4 need two new 2-CPU nodes.
    assert decide(policy, _demand([({"CPU": 1}, 5)], nodes=[head]), []).launch == 2
    # One node already starting takes two of them.
    starting = [WorkerState("w1")]
    assert decide(policy, _demand([({"CPU": 1}, 5)], nodes=[head]), starting).launch == 1
    # Bounded by max_workers, raised to min_workers.
    assert decide(Policy({"CPU": 2}, max_workers=1), _demand([({"CPU": 1}, 9)]), []).launch == 1
    assert decide(Policy({"CPU": 2}, min_workers=2), _demand(), []).launch == 2
    # A shape no worker could hold is named, not scaled for.
    decision = decide(policy, _demand([({"GPU": 1}, 3)], nodes=[head]), [])
    assert decision.launch == 0 and decision.unfit == [{"GPU": 1}]
    # Infeasible requests that a worker node could hold count (unless told not to).
    assert decide(policy, _demand(infeasible=[({"CPU": 2}, 1)]), []).launch == 1
    no_infeasible = Policy({"CPU": 2}, upscale_for_infeasible=False)
    assert decide(no_infeasible, _demand(infeasible=[({"CPU": 2}, 1)]), []).launch == 0


def test_policy_removes_only_long_idle_workers_with_nothing_anyone_needs():
    policy = Policy({"CPU": 1}, min_workers=1, idle_timeout_seconds=5)
    idle = _node("a", {"CPU": 1}, idle=True, idle_seconds=9)
    idler = _node("b", {"CPU": 1}, idle=True, idle_seconds=20)
    fresh = _node("c", {"CPU": 1}, idle=True, idle_seconds=1)
    actors = _node("d", {"CPU": 1}, idle=True, idle_seconds=30, hosts_actors=True)
    busy = _node("e", {"CPU": 0}, idle=False)
    workers = [WorkerState(n["node_id"], n) for n in (idle, idler, fresh, actors, busy)]
    demand = _demand(nodes=[idle, idler, fresh, actors, busy])
    # The longest idle first; one kept for min_workers is not needed (4 of 5 may go).
    assert decide(policy, demand, workers).remove == ["b", "a"]
    # With work waiting that a worker could run, nothing is removed.
    waiting = _demand([({"CPU": 1}, 1)], nodes=[busy])
    assert decide(policy, waiting, workers).remove == []
    # min_workers holds.
    assert decide(Policy({"CPU": 1}, min_workers=5), demand, workers).remove == []


def test_policy_rejects_bad_bounds():
    with pytest.raises(ValueError, match="min_workers <= max_workers"):
        Policy({"CPU": 1}, min_workers=3, max_workers=2)
    with pytest.raises(ValueError, match="worker_shape"):
        Policy({})


# -- end to end with LocalProvider ----------------------------------------------------------------


@actorflow.remote(num_cpus=1)
def together(barrier: str, index: int, parties: int) -> str:
    """Runs until parties tasks run at once (each marks itself in the folder barrier)."""
    Path(barrier, str(index)).touch()
    deadline = time.monotonic() + 90
    while len(os.listdir(barrier)) < parties and time.monotonic() < deadline:
        time.sleep(0.05)
    return actorflow.get_runtime_context().get_node_id()


@pytest.mark.timeout(240)
def test_autoscaler_brings_two_nodes_for_queued_work_and_removes_them_when_idle(
    tmp_path, poll_until, local_cluster
):
    head = local_cluster.add_node(num_cpus=1)
    address = local_cluster.address
    actorflow.init(address=address)
    provider = LocalProvider(
        address,
        num_cpus=1,
        drain_grace_seconds=5,
        env={"ACTORFLOW_SESSION_ROOT": local_cluster.session_root},
        log_dir=str(tmp_path / "logs"),
    )
    decisions: list = []
    scaler = Autoscaler(
        provider,
        Policy({"CPU": 1}, max_workers=2, idle_timeout_seconds=2),
        address=address,
        interval_seconds=0.5,
        on_decision=lambda decision, demand: decisions.append((decision, demand)),
    )
    started_pids: list[int] = []
    try:
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        refs = [together.remote(str(barrier), i, 3) for i in range(3)]
        # The demand shows in the state API before anything scales: 2 one-CPU tasks wait.
        demand = poll_until(
            lambda: (lambda d: d if d["pending"] else None)(state.cluster_demand(address)),
            timeout=60,
            message="no pending demand reported",
        )
        assert demand["pending"] == [{"shape": {"CPU": 1.0}, "count": 2, "kind": "task"}]
        assert "2 x {CPU: 1}" in state.format_status(state.cluster_status(address))
        scaler.start()
        poll_until(lambda: len(provider.pids()) == 2, timeout=60, message="no nodes launched")
        started_pids = provider.pids()
        nodes = set(actorflow.get(refs, timeout=120))
        assert len(nodes) == 3 and head["node_id"] in nodes  # they ran at once, on 3 nodes
        assert max(d.launch for d, _ in decisions) <= 2
        assert sum(d.launch for d, _ in decisions) == 2  # no more than the work needed
        # Idle for 2 s: drained and removed; the head stays.
        poll_until(lambda: not provider.pids(), timeout=90, message="idle nodes not removed")
        assert set(provider.exit_codes.values()) == {0}  # each drained and exited cleanly
        rows = state.node_rows(address)
        gone = [n for n in rows if n["node_id"] in nodes - {head["node_id"]}]
        assert len(gone) == 2 and all("drained" in n["death_cause"] for n in gone)
        assert [n["node_id"] for n in rows if n["alive"]] == [head["node_id"]]
        assert scaler.errors == 0
    finally:
        scaler.stop()
        provider.close(timeout=20)
        for pid in started_pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@pytest.mark.timeout(120)
def test_idle_node_holding_a_primary_object_or_an_actor_is_kept(
    tmp_path, poll_until, local_cluster
):
    local_cluster.add_node(num_cpus=1)
    other = local_cluster.add_node(num_cpus=1, resources={"there": 1})
    actorflow.init(address=local_cluster.address)

    @actorflow.remote(resources={"there": 1})
    def big() -> bytes:
        return b"x" * (1 << 20)  # in that node's store: its primary copy

    def row() -> dict:
        demand = state.cluster_demand(local_cluster.address)
        return next(n for n in demand["nodes"] if n["node_id"] == other["node_id"])

    ref = big.remote()
    actorflow.wait([ref], timeout=60)
    poll_until(lambda: row()["busy"].get("primary_objects") == 1, timeout=30)
    assert not row()["idle"]
    del ref  # freed by its owner: the node has nothing anyone needs
    poll_until(lambda: row()["idle"], timeout=30, message="the node did not turn idle")

    @actorflow.remote(resources={"there": 0.5})
    class Resident:
        def ping(self) -> int:
            return 1

    actor = Resident.remote()
    assert actorflow.get(actor.ping.remote(), timeout=60) == 1
    poll_until(lambda: not row()["idle"] and row()["hosts_actors"], timeout=30)
    policy = Policy({"CPU": 1}, idle_timeout_seconds=0)
    demand = state.cluster_demand(local_cluster.address)
    assert decide(policy, demand, [WorkerState("w", row())]).remove == []
    actorflow.kill(actor)


def test_pending_demand_is_a_metric(local_cluster, poll_until):
    local_cluster.add_node(num_cpus=1)
    assert local_cluster.gcs is not None
    url = f"http://{local_cluster.gcs['metrics_address']}/metrics"
    actorflow.init(address=local_cluster.address)

    @actorflow.remote(num_cpus=1)
    def hold(seconds: float) -> None:
        time.sleep(seconds)

    refs = [hold.remote(3) for _ in range(3)]

    def pending_tasks() -> float:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith('actorflow_pending_requests{Kind="task",State="pending"}'):
                return float(line.split()[-1])
        return 0.0

    poll_until(lambda: pending_tasks() >= 1, timeout=30, message="no pending demand metric")
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'actorflow_pending_resources{Name="CPU",State="pending"}' in text
    actorflow.get(refs, timeout=60)


# -- KubernetesProvider against a fake API server -------------------------------------------------


class FakeKubernetes:
    """Enough of the Kubernetes API for the worker Deployment: its scale (GET, PATCH), its
    pods (a ReplicaSet controller that creates and deletes them, lowest deletion cost first)
    and pod annotations (PATCH). Every request is recorded."""

    def __init__(self, namespace: str, deployment: str, replicas: int) -> None:
        self.namespace, self.deployment = namespace, deployment
        self.replicas = replicas
        self.pods: dict[str, dict] = {}
        self.requests: list[tuple[str, str, str, Any]] = []  # method, path, content type, body
        self._next = 0
        self._reconcile()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_PATCH(self) -> None:
                fake.handle(self, "PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _reconcile(self) -> None:
        while len(self.pods) < self.replicas:
            self._next += 1
            name = f"{self.deployment}-{self._next}"
            self.pods[name] = {
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {
                        "app.kubernetes.io/name": "actorflow",
                        "app.kubernetes.io/component": "worker",
                    },
                    "annotations": {},
                },
                "status": {"podIP": f"10.0.0.{self._next}", "phase": "Running"},
            }
        while len(self.pods) > self.replicas:
            cost = min(
                self.pods,
                key=lambda n: int(
                    self.pods[n]["metadata"]["annotations"].get(
                        "controller.kubernetes.io/pod-deletion-cost", "0"
                    )
                ),
            )
            del self.pods[cost]

    def _scale(self) -> dict:
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": self.deployment, "namespace": self.namespace},
            "spec": {"replicas": self.replicas},
            "status": {"replicas": len(self.pods)},
        }

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length)) if length else None
        self.requests.append((method, parsed.path, request.headers.get("Content-Type", ""), body))
        ns = f"/namespaces/{self.namespace}"
        scale_path = f"/apis/apps/v1{ns}/deployments/{self.deployment}/scale"
        answer: Any
        if parsed.path == scale_path and method == "GET":
            answer = self._scale()
        elif parsed.path == scale_path and method == "PATCH":
            self.replicas = int(body["spec"]["replicas"])
            self._reconcile()
            answer = self._scale()
        elif parsed.path == f"/api/v1{ns}/pods" and method == "GET":
            selector = parse_qs(parsed.query).get("labelSelector", [""])[0]
            wanted = dict(part.split("=") for part in selector.split(",") if part)
            items = [
                p
                for p in self.pods.values()
                if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
            answer = {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        elif parsed.path.startswith(f"/api/v1{ns}/pods/") and method == "PATCH":
            pod = self.pods.get(parsed.path.rsplit("/", 1)[1])
            if pod is None:
                request.send_response(404)
                request.end_headers()
                return
            pod["metadata"]["annotations"].update(body["metadata"]["annotations"])
            answer = pod
        else:
            request.send_response(404)
            request.end_headers()
            return
        data = json.dumps(answer).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.mark.timeout(60)
def test_kubernetes_provider_scales_the_worker_deployment_through_the_client():
    from kubernetes import client

    with FakeKubernetes("actorflow", "actorflow-worker", replicas=1) as fake:
        configuration = client.Configuration()
        configuration.host = fake.url
        provider = KubernetesProvider(
            "actorflow-worker", "actorflow", api_client=client.ApiClient(configuration)
        )
        assert provider.replicas() == 1
        # The pod is matched to its cluster node by IP.
        node = _node("n1", {"CPU": 1}, host="10.0.0.1", idle=True, idle_seconds=99)
        assert provider.workers([node]) == [WorkerState("actorflow-worker-1", node)]
        # Demand for two more one-CPU nodes: the scale goes to 3 (a PATCH of the scale).
        policy = Policy({"CPU": 1}, max_workers=5, idle_timeout_seconds=10)
        busy = dict(node, idle=False, available={"CPU": 0})
        decision = decide(
            policy, _demand([({"CPU": 1}, 2)], nodes=[busy]), provider.workers([busy])
        )
        assert decision.launch == 2
        provider.launch(decision.launch)
        assert fake.replicas == 3 and provider.replicas() == 3
        patch = [r for r in fake.requests if r[0] == "PATCH" and r[1].endswith("/scale")][-1]
        assert patch[3] == {"spec": {"replicas": 3}}
        assert "patch" in patch[2] or patch[2] == "application/json"
        # Pods not matched to a node yet are starting: no more is launched for the same work.
        workers = provider.workers([busy])
        assert [w.node is None for w in workers] == [False, True, True]
        assert decide(policy, _demand([({"CPU": 1}, 2)], nodes=[busy]), workers).launch == 0
        # The first pod idles past the timeout: it is marked to go first, and the scale drops.
        nodes = [
            node,
            _node("n2", {"CPU": 0}, host="10.0.0.2"),
            _node("n3", {"CPU": 0}, host="10.0.0.3"),
        ]
        decision = decide(policy, _demand(nodes=nodes), provider.workers(nodes))
        assert decision.remove == ["actorflow-worker-1"]
        provider.terminate(decision.remove)
        assert fake.replicas == 2
        assert sorted(fake.pods) == ["actorflow-worker-2", "actorflow-worker-3"]
        annotated = [r for r in fake.requests if r[0] == "PATCH" and "/pods/" in r[1]]
        assert annotated[0][1].endswith("/pods/actorflow-worker-1")
        assert annotated[0][3] == {
            "metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}
        }
