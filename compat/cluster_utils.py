"""What Ray's tests use of ``ray.cluster_utils`` (a multi-node cluster on one machine), on
actorflow's ``actorflow.util.local_cluster.LocalCluster``. The alias maps ``ray.cluster_utils``
here."""

from __future__ import annotations

from typing import Any

import ray

# Ray marks cluster tests xfail where its Cluster is not supported (Windows); it is here.
cluster_not_supported = False
# Node arguments dropped: actorflow has no _system_config table.
DROPPED = ("_system_config",)


class Cluster:
    """The part of Ray's ``ray.cluster_utils.Cluster`` that tests use, on actorflow's
    ``actorflow.util.local_cluster.LocalCluster``."""

    def __init__(
        self,
        initialize_head: bool = False,
        connect: bool = False,
        head_node_args: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        from actorflow.util.local_cluster import LocalCluster  # only under the alias

        self._cluster = LocalCluster()
        self.head_node: dict[str, Any] | None = None
        self.worker_nodes: list[dict[str, Any]] = []
        if initialize_head:
            self.head_node = self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()

    @property
    def address(self) -> str:
        return self._cluster.address

    def add_node(self, wait: bool = True, **node_args: Any) -> dict[str, Any]:
        for key in DROPPED:
            node_args.pop(key, None)
        node_args.setdefault("num_cpus", 1)
        node = self._cluster.add_node(**node_args)
        if self.head_node is None:
            self.head_node = node
        else:
            self.worker_nodes.append(node)
        return node

    def remove_node(self, node: dict[str, Any], allow_graceful: bool = True) -> None:
        self._cluster.kill_node(node)
        if node in self.worker_nodes:
            self.worker_nodes.remove(node)

    def wait_for_nodes(self, timeout: float = 30) -> None:
        from compat.test_utils import wait_for_condition

        if not ray.is_initialized():
            return  # not connected: asking would start a cluster of its own; add_node waited
        expected = len(self._cluster.nodes)
        wait_for_condition(lambda: sum(n["Alive"] for n in ray.nodes()) >= expected, timeout)

    def list_all_nodes(self) -> list[dict[str, Any]]:
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    def connect(self, namespace: str | None = None) -> Any:
        return ray.init(address=self.address, namespace=namespace)

    def shutdown(self) -> None:
        ray.shutdown()
        self._cluster.shutdown()


AliasCluster = Cluster
