"""A cluster of several node processes on this machine, for tests and benchmarks (as Ray's
``ray.cluster_utils.Cluster``): each node is started the way ``actorflow start`` starts one, and
``kill_node`` ends one by its pid, as a crash would.

    with LocalCluster(session_root=tmp) as cluster:
        cluster.add_node(num_cpus=2)                # the head
        cluster.add_node(num_cpus=2, resources={"special": 1})
        actorflow.init(address=cluster.address)
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any

from actorflow._private.cluster import session_dir
from actorflow._private.cluster.launcher import start_gcs, start_node
from actorflow._private.config import Config


class LocalCluster:
    def __init__(
        self, session_root: str | None = None, host: str = "127.0.0.1", tls: bool = False
    ) -> None:
        self.session_root = session_root or Config.from_env().session_root
        self.host = host
        # TLS between all its processes (`actorflow start --head --tls`); nodes share the
        # head's session on this machine, and so its certificates.
        self.tls = tls
        self.nodes: list[dict[str, Any]] = []  # node infos, the head first
        self.gcs: dict[str, Any] | None = None  # the GCS process's info

    @property
    def address(self) -> str:
        """HOST:PORT of the head's GCS, for ``actorflow.init(address=...)``."""
        if not self.nodes:
            raise RuntimeError("the cluster has no head yet: call add_node() first")
        return str(self.nodes[0]["gcs_address"]).split("://")[-1]

    @property
    def dashboard_url(self) -> str:
        """http://HOST:PORT of the head's dashboard ("" if it serves none)."""
        dashboard = self.nodes[0].get("dashboard") if self.nodes else None
        return str(dashboard["url"]) if dashboard else ""

    @property
    def head(self) -> dict[str, Any]:
        return self.nodes[0]

    def add_node(
        self,
        *,
        num_cpus: float | None = 1,
        num_gpus: float | None = None,
        resources: dict[str, float] | None = None,
        object_store_memory: int = 0,
        host: str | None = None,
        env: dict[str, str] | None = None,
        wrapper: list[str] | None = None,
        storage: str = "",
        metrics_export_port: int = 0,
        drain_grace_seconds: float = 0.0,
        dashboard: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start a node and return its info: node_id, address, pid, session_dir, log_path.
        ``dashboard`` (the head only): also serve the web dashboard, e.g. ``{"port": 0}``
        (host and port; its url is then ``info["dashboard"]["url"]``).
        Its /metrics is at ``http://{info["metrics_address"]}/metrics`` (a free port unless
        metrics_export_port is given). The first one is the head: the cluster's GCS (a
        process of its own, keeping its tables in ``storage``, default SQLite in the
        session) and the head's node. ``wrapper`` prefixes the command (e.g. ``ip netns
        exec NS``). With drain_grace_seconds above 0, SIGTERM drains the node first
        (``kill_node(node, signal.SIGTERM)``: its running tasks get that long to finish)."""
        if dashboard is not None and self.nodes:
            raise ValueError("only the head serves the dashboard: pass dashboard= to its add_node")
        info = start_node(
            head=not self.nodes,
            address=self.address if self.nodes else "",
            host=host or self.host,
            port=0,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            resources=resources,
            object_store_memory=object_store_memory,
            storage=storage,
            metrics_export_port=metrics_export_port,
            session_root=self.session_root,
            env=env,
            wrapper=wrapper,
            tls=self.tls,
            drain_grace_seconds=drain_grace_seconds,
            dashboard=dashboard,
        )
        if info.get("gcs"):
            self.gcs = info["gcs"]
            self._gcs_wrapper, self._gcs_env = wrapper, env
        self.nodes.append(info)
        return info

    def kill_gcs(self, sig: int = signal.SIGKILL) -> None:
        """End the GCS process by its pid (SIGKILL: as a crash); the nodes keep running."""
        assert self.gcs is not None, "the cluster has no head"
        process: subprocess.Popen = self.gcs["popen"]
        if process.poll() is None:
            process.send_signal(sig)
        process.wait(timeout=30)

    def restart_gcs(self) -> dict[str, Any]:
        """Start the GCS again at the same address, with the same token and storage: it
        reloads its tables, and nodes, workers and drivers reconnect to it."""
        assert self.gcs is not None, "the cluster has no head"
        session = self.gcs["session_dir"]
        token = session_dir.read_token(session)
        assert token is not None
        address = str(self.gcs["gcs_address"]).split("://")[-1]
        host, port = address.rsplit(":", 1)
        self.gcs = start_gcs(
            session=session,
            token=token,
            host=host,
            port=int(port),
            storage=self.gcs["storage"],
            env=self._gcs_env,
            wrapper=self._gcs_wrapper,
        )
        return self.gcs

    def kill_node(self, node: dict[str, Any], sig: int = signal.SIGKILL) -> None:
        """End a node's process by its pid (SIGKILL: as if its machine died); its workers end
        with it."""
        process: subprocess.Popen = node["popen"]
        if process.poll() is None:
            process.send_signal(sig)
        process.wait(timeout=30)

    def shutdown(self) -> None:
        """End every node this cluster started: SIGTERM, then SIGKILL for those that linger."""
        processes = [n["dashboard"]["popen"] for n in self.nodes if n.get("dashboard")]
        processes += [node["popen"] for node in reversed(self.nodes)]
        if self.gcs is not None:
            processes.append(self.gcs["popen"])
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.nodes = []
        self.gcs = None

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
