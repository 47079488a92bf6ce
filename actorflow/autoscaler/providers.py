"""Node providers: what starts and removes worker nodes for the autoscaler.

A provider says which worker nodes it runs (``workers(nodes)``, each matched to its row of the
cluster's nodes once it has registered), adds some (``launch(count)``) and removes some
(``terminate(handles)``). Removal always goes through the node's SIGTERM drain: no new work
goes there, and its running tasks finish first (``actorflow start --block``).

- ``LocalProvider``: node processes on this machine, ``actorflow start --address ... --block``,
  tracked by pid (tests, a workstation).
- ``KubernetesProvider``: the replicas of the worker Deployment (deploy/kubernetes/), through
  the official ``kubernetes`` client (``pip install actorflow[k8s]``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from actorflow.autoscaler.policy import WorkerState

logger = logging.getLogger("actorflow.autoscaler")


class NodeProvider(Protocol):
    def workers(self, nodes: Sequence[Mapping[str, Any]]) -> list[WorkerState]:
        """The worker nodes it runs, each with its row of nodes (None while starting)."""
        ...

    def launch(self, count: int) -> None: ...

    def terminate(self, handles: Sequence[str]) -> None:
        """Drain and remove these worker nodes."""
        ...


def _parent_pid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class LocalProvider:
    """Worker nodes as processes on this machine: ``actorflow start --address ADDRESS --block``
    with these resources; each is tracked by the pid of that command (the node process is its
    child), removed with SIGTERM (the node drains, then exits), and ended by ``close()``."""

    def __init__(
        self,
        address: str,
        *,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        resources: Mapping[str, float] | None = None,
        object_store_memory: int = 0,
        drain_grace_seconds: float = 10.0,
        token_file: str = "",
        env: Mapping[str, str] | None = None,
        log_dir: str = "",
    ) -> None:
        if not address:
            raise ValueError("LocalProvider needs the cluster's GCS address, HOST:PORT")
        self.address = address
        self.command = [
            sys.executable,
            "-m",
            "actorflow.cli",
            "start",
            "--address",
            address,
            "--block",
            "--drain-grace-seconds",
            str(drain_grace_seconds),
            "--resources",
            json.dumps(dict(resources or {})),
        ]
        if num_cpus is not None:
            self.command += ["--num-cpus", str(num_cpus)]
        if num_gpus is not None:
            self.command += ["--num-gpus", str(num_gpus)]
        if object_store_memory:
            self.command += ["--object-store-memory", str(object_store_memory)]
        if token_file:
            self.command += ["--token-file", token_file]
        self.env = dict(os.environ, **dict(env or {}))
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="actorflow-autoscaler-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}  # handle (its pid) -> the process
        self.exit_codes: dict[str, int] = {}  # handles of ended nodes -> their exit code

    def _reap(self) -> None:
        for handle, process in list(self.processes.items()):
            code = process.poll()
            if code is not None:
                del self.processes[handle]
                self.exit_codes[handle] = code
                if code != 0:
                    logger.warning(
                        "worker node %s exited with code %s (log %s)",
                        handle,
                        code,
                        self._log(handle),
                    )

    def _log(self, handle: str) -> str:
        return os.path.join(self.log_dir, f"node-{handle}.log")

    def workers(self, nodes: Sequence[Mapping[str, Any]]) -> list[WorkerState]:
        self._reap()
        by_parent = {_parent_pid(int(n.get("pid") or 0)): n for n in nodes if n.get("pid")}
        return [WorkerState(handle, by_parent.get(int(handle))) for handle in self.processes]

    def launch(self, count: int) -> None:
        for _ in range(count):
            log_path = os.path.join(self.log_dir, f"starting-{time.monotonic_ns()}.log")
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self.env,
                    start_new_session=True,
                )
            handle = str(process.pid)
            os.replace(log_path, self._log(handle))
            self.processes[handle] = process
            logger.warning("started worker node process %s (log %s)", handle, self._log(handle))

    def terminate(self, handles: Sequence[str]) -> None:
        for handle in handles:
            process = self.processes.get(handle)
            if process is not None and process.poll() is None:
                logger.warning("draining worker node process %s", handle)
                process.send_signal(signal.SIGTERM)

    def pids(self) -> list[int]:
        """The pids of the node commands still running."""
        self._reap()
        return [p.pid for p in self.processes.values()]

    def close(self, timeout: float = 30.0) -> None:
        """End every node it started: SIGTERM (drain), then SIGKILL after timeout."""
        self.terminate(list(self.processes))
        deadline = time.monotonic() + timeout
        for process in list(self.processes.values()):
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._reap()


# The annotation the ReplicaSet controller reads to pick which pods go first on a scale down.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


class KubernetesProvider:
    """The worker Deployment's replicas (deploy/kubernetes/worker.yaml). Launching raises its
    scale; removing marks the chosen pods with the lowest pod-deletion-cost and lowers the
    scale, so that Kubernetes deletes those pods (each gets SIGTERM: its node drains). A pod is
    matched to its cluster node by IP (the node's host is its pod's IP)."""

    def __init__(
        self,
        deployment: str = "actorflow-worker",
        namespace: str = "default",
        *,
        label_selector: str = "app.kubernetes.io/name=actorflow,app.kubernetes.io/component=worker",
        api_client: Any = None,
    ) -> None:
        try:
            from kubernetes import client, config
        except ImportError:
            raise ImportError(
                "KubernetesProvider needs the kubernetes client: pip install 'actorflow[k8s]'"
            ) from None
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self.deployment, self.namespace, self.label_selector = deployment, namespace, label_selector
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def replicas(self) -> int:
        scale: Any = self.apps.read_namespaced_deployment_scale(self.deployment, self.namespace)
        return int(scale.spec.replicas or 0)

    def _scale(self, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(
            self.deployment, self.namespace, {"spec": {"replicas": max(0, replicas)}}
        )
        logger.warning("scaled deployment %s/%s to %d", self.namespace, self.deployment, replicas)

    def workers(self, nodes: Sequence[Mapping[str, Any]]) -> list[WorkerState]:
        pods: list[Any] = self.core.list_namespaced_pod(
            self.namespace, label_selector=self.label_selector
        ).items
        by_ip = {str(n.get("host") or ""): n for n in nodes}
        states = [
            WorkerState(pod.metadata.name, by_ip.get(str(pod.status.pod_ip or "")) or None)
            for pod in pods
            if pod.metadata.deletion_timestamp is None
        ]
        # Replicas asked for whose pods do not exist yet are starting too.
        missing = self.replicas() - len(states)
        states += [WorkerState(f"(pending pod {i})") for i in range(max(0, missing))]
        return states

    def launch(self, count: int) -> None:
        if count > 0:
            self._scale(self.replicas() + count)

    def terminate(self, handles: Sequence[str]) -> None:
        pods = [h for h in handles if not h.startswith("(")]
        for name in pods:
            self.core.patch_namespaced_pod(
                name, self.namespace, {"metadata": {"annotations": {DELETION_COST: "-1000"}}}
            )
        if pods:
            self._scale(self.replicas() - len(pods))
