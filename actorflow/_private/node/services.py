"""One node's services on a runtime: its object store and its raylet (the head's runtime hosts
the GCS too, see control/host.py). A node process (cluster/node_main.py) runs one; the embedded
cluster of ``init()`` (cluster/local.py) runs one on the driver's own runtime.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from actorflow._private import ids
from actorflow._private.config import Config
from actorflow._private.metrics.server import MetricsPortInUseError
from actorflow._private.node.logs import LogService
from actorflow._private.node.metrics import NodeMetrics
from actorflow._private.node.object_store import ObjectStore, default_capacity
from actorflow._private.node.raylet import Raylet
from actorflow._private.node.resources import normalize
from actorflow._private.node.segment_socket import socket_path
from actorflow._private.protocol.worker_spec import WorkerSpec
from actorflow._private.runtime import Runtime

logger = logging.getLogger("actorflow.node")


def node_resources(
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict[str, float] | None,
    memory_fraction: float,
) -> dict[str, float]:
    """A node's resources: its CPUs, GPUs and, as Ray gives every node, a ``memory`` resource
    (memory_fraction of its RAM, in bytes; tasks ask for it with ``memory=``) unless the caller
    names one in resources."""
    extra = normalize(resources)
    for reserved in ("CPU", "GPU"):
        if reserved in extra:
            raise ValueError(
                f"give {reserved} with num_{reserved.lower()}s=..., not in "
                f"resources={{'{reserved}': ...}}"
            )
    cpus = float(os.cpu_count() or 1) if num_cpus is None else num_cpus
    gpus = 0.0 if num_gpus is None else num_gpus
    total = normalize(
        {"CPU": cpus, "GPU": gpus, "memory": float(int(memory_fraction * physical_memory()))}
    )
    total.update(extra)
    return total


def physical_memory() -> float:
    """This machine's RAM in bytes (0 where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0.0


def host_of(address: str) -> str:
    """The host part of tcp://HOST:PORT."""
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


class NodeServices:
    """One node: its object store and raylet, on a runtime (the head's hosts the GCS too)."""

    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        *,
        resources: dict[str, float],
        session_dir: str,
        gcs_address: str,
        token: bytes,
        is_head: bool,
        metrics_port: int | None = 0,
        tls_dir: str = "",
        log_path: str = "",
    ) -> None:
        self.runtime = runtime
        self.tls_dir = tls_dir  # its workers' certificates ("" without TLS)
        self.config = config
        self.resources = resources
        self.session_dir = session_dir
        self.gcs_address = gcs_address
        self.token = token
        self.is_head = is_head
        self.node_id = ids.new_id(8).hex()
        self.store: ObjectStore | None = None
        self.raylet: Raylet | None = None
        # /metrics on the node's host (loopback unless the node listens elsewhere), on this
        # port (0: a free one; None: not served, the totals are still kept).
        self.metrics_port = metrics_port
        self.metrics_port_fallback = False  # a taken port: warn and take a free one
        self.metrics = NodeMetrics(runtime, self.node_id)
        self.log_path = log_path  # the node process's own log file, served with its workers'

    async def start(self, prestart: int = 0, prestart_job: str = "") -> None:
        runtime = self.runtime
        metrics = self.metrics
        runtime.register_actor("metrics", metrics)
        metrics.info = self.info
        if self.metrics_port is not None:
            host = host_of(runtime.address)
            try:
                await metrics.server.start(host, self.metrics_port)
            except MetricsPortInUseError as exc:
                if not self.metrics_port_fallback:
                    raise
                logger.warning("%s: serving /metrics on a free port instead", exc.strerror)
                await metrics.server.start(host, 0)
        store = self.store = ObjectStore(
            runtime,
            self.config,
            node_id=self.node_id,
            capacity=self.config.object_store_memory or default_capacity(),
            spill_dir=self.config.object_spilling_directory
            or os.path.join(self.session_dir, "spill"),
            socket_path=socket_path(self.session_dir, self.node_id),
        )
        store.start()
        runtime.register_actor("store", store)
        self.raylet = Raylet(
            runtime,
            self.config,
            node_id=self.node_id,
            resources=self.resources,
            session_dir=self.session_dir,
            gcs_address=self.gcs_address,
            worker_spec=self._worker_spec(),
            node_info=self.info(),
        )
        self.raylet.on_worker_gone = store.process_gone
        self.raylet.primary_objects = store.primary_count
        metrics.server.health = self.raylet.health
        metrics.raylet, metrics.store = self.raylet, store
        runtime.register_actor("raylet", self.raylet)
        runtime.register_actor("logs", LogService(self.raylet.pool, self.log_path))
        await self.raylet.start(prestart, prestart_job)

    def info(self) -> dict[str, Any]:
        """What the GCS and tools know of this node."""
        return {
            "node_id": self.node_id,
            "address": self.runtime.address,
            "gcs_address": self.gcs_address,
            "host": host_of(self.runtime.address),
            "pid": os.getpid(),
            "is_head": self.is_head,
            "session_dir": self.session_dir,
            "shm_prefix": self.store.prefix if self.store else "",
            "spill_dir": self.store.spill_dir if self.store else "",
            "segment_socket": self.store.socket_path if self.store else "",
            "object_store_memory": self.store.state.capacity if self.store else 0,
            "resources": self.resources,
            "metrics_address": self.metrics.server.address,  # HOST:PORT of /metrics, or ""
            "tls": bool(self.tls_dir),
        }

    def _worker_spec(self) -> WorkerSpec:
        """What every worker of this node gets; its job and the pool add their part."""
        address = self.runtime.address
        return WorkerSpec(
            node_id=self.node_id,
            node_host=host_of(address),
            raylet_address=address,
            gcs_address=self.gcs_address,
            session_dir=self.session_dir,
            shm_prefix=self.store.prefix if self.store else "",
            spill_dir=self.store.spill_dir if self.store else "",
            segment_socket=self.store.socket_path if self.store else "",
            token=self.token,
            tls_dir=self.tls_dir,
            config=self.config,
        )

    async def shutdown(self) -> None:
        await self.metrics.server.aclose()
        if self.raylet is not None:
            await self.raylet.shutdown()
        if self.store is not None:
            self.store.shutdown()
