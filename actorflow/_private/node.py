"""The embedded local cluster: ``init()`` with no address.

The GCS and the node's raylet are actors like any other, so the embedded cluster hosts them on
the driver's own runtime: no extra process to start, and the driver's lease requests never leave
the process. Workers are separate processes; they exit when this process goes away, however it
goes (see worker_main.py).
"""

from __future__ import annotations

import math
import os
import secrets
import sys
from typing import Any

from actorflow._private import ids, session_dir
from actorflow._private.config import Config
from actorflow._private.core_worker import CoreWorker
from actorflow._private.gcs import GCS
from actorflow._private.gcs_actors import ActorManager
from actorflow._private.gcs_storage import Storage
from actorflow._private.loop_thread import LoopThread
from actorflow._private.object_store import ObjectStore, default_capacity
from actorflow._private.raylet import Raylet
from actorflow._private.resources import normalize
from actorflow._private.runtime import Runtime


def node_resources(num_cpus: float | None, num_gpus: float | None,
                   resources: dict[str, float] | None) -> dict[str, float]:
    extra = normalize(resources)
    for reserved in ("CPU", "GPU"):
        if reserved in extra:
            raise ValueError(f"give {reserved} with num_{reserved.lower()}s=..., not in "
                             f"resources={{'{reserved}': ...}}")
    cpus = float(os.cpu_count() or 1) if num_cpus is None else num_cpus
    gpus = 0.0 if num_gpus is None else num_gpus
    total = normalize({"CPU": cpus, "GPU": gpus})
    total.update(extra)
    return total


def host_of(address: str) -> str:
    """The host part of tcp://HOST:PORT."""
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


def job_config(config: Config, driver_address: str) -> dict[str, Any]:
    """What a job's workers need from its driver: its import path and where output goes."""
    # Functions defined in importable modules are pickled by reference: workers import them
    # by the driver's path.
    sys_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    return {"sys_path": sys_path,
            "log_address": driver_address if config.log_to_driver else ""}


def host_gcs(runtime: Runtime, config: Config, storage: Storage | None = None) -> GCS:
    """Make this runtime the cluster's head: the GCS and its actor table (reloaded from the
    storage, if it has tables; then call ``gcs.recover_all()``)."""
    gcs = GCS(runtime, node_timeout=config.node_timeout_seconds, storage=storage)
    actors = ActorManager(runtime, gcs)
    actors.load(gcs.load())
    runtime.register_actor("gcs", gcs)
    runtime.register_actor("actors", actors)
    gcs.start()
    return gcs


class NodeServices:
    """One node: its object store and raylet, on a runtime (the head's hosts the GCS too)."""

    def __init__(self, runtime: Runtime, config: Config, *, resources: dict[str, float],
                 session_dir: str, gcs_address: str, token: bytes, is_head: bool) -> None:
        self.runtime = runtime
        self.config = config
        self.resources = resources
        self.session_dir = session_dir
        self.gcs_address = gcs_address
        self.token = token
        self.is_head = is_head
        self.node_id = ids.new_id(8).hex()
        self.store: ObjectStore | None = None
        self.raylet: Raylet | None = None

    async def start(self, prestart: int = 0, prestart_job: str = "") -> None:
        runtime = self.runtime
        store = self.store = ObjectStore(
            runtime, node_id=self.node_id,
            capacity=self.config.object_store_memory or default_capacity(),
            spill_dir=self.config.object_spilling_directory
            or os.path.join(self.session_dir, "spill"))
        store.start()
        runtime.register_actor("store", store)
        self.raylet = Raylet(
            runtime, self.config, node_id=self.node_id, resources=self.resources,
            session_dir=self.session_dir, gcs_address=self.gcs_address,
            worker_env=self._worker_env(), node_info=self.info())
        self.raylet.on_worker_gone = store.process_gone
        runtime.register_actor("raylet", self.raylet)
        await self.raylet.start(prestart, prestart_job)

    def info(self) -> dict[str, Any]:
        """What the GCS and tools know of this node."""
        return {"node_id": self.node_id, "address": self.runtime.address,
                "gcs_address": self.gcs_address, "host": host_of(self.runtime.address),
                "pid": os.getpid(), "is_head": self.is_head, "session_dir": self.session_dir,
                "shm_prefix": self.store.prefix if self.store else "",
                "spill_dir": self.store.spill_dir if self.store else "",
                "object_store_memory": self.store.state.capacity if self.store else 0,
                "resources": self.resources}

    def _worker_env(self) -> dict[str, str]:
        """What every worker of this node gets; its job adds its own (raylet.py)."""
        address = self.runtime.address
        return {
            "ACTORFLOW_TOKEN": self.token.hex(),
            "ACTORFLOW_RAYLET_ADDRESS": address,
            "ACTORFLOW_GCS_ADDRESS": self.gcs_address,
            "ACTORFLOW_NODE_ID": self.node_id,
            "ACTORFLOW_NODE_HOST": host_of(address),
            "ACTORFLOW_SESSION_DIR": self.session_dir,
            "ACTORFLOW_SHM_PREFIX": self.store.prefix if self.store else "",
            "ACTORFLOW_SPILL_DIR": self.store.spill_dir if self.store else "",
            "ACTORFLOW_PARENT_PID": str(os.getpid()),
        }

    async def shutdown(self) -> None:
        if self.raylet is not None:
            await self.raylet.shutdown()
        if self.store is not None:
            self.store.shutdown()


class LocalSession:
    """GCS + one node + worker pool + this driver's core worker, on one runtime loop."""

    def __init__(self, config: Config, *, num_cpus: float | None, num_gpus: float | None,
                 resources: dict[str, float] | None, namespace: str | None) -> None:
        self.config = config
        self.resources = node_resources(num_cpus, num_gpus, resources)
        self.namespace = namespace or f"anonymous-{ids.new_id(4).hex()}"
        self.session_dir = ""
        self.token = b""
        self.loop_thread: LoopThread | None = None
        self.runtime: Runtime | None = None
        self.node: NodeServices | None = None
        self.gcs: GCS | None = None
        self.core: CoreWorker | None = None

    @property
    def store(self) -> ObjectStore | None:
        return self.node.store if self.node else None

    @property
    def raylet(self) -> Raylet | None:
        return self.node.raylet if self.node else None

    def start(self) -> CoreWorker:
        self.session_dir = session_dir.create(self.config.session_root)
        self.token = secrets.token_bytes(32)
        session_dir.write_token(self.session_dir, self.token)
        self.loop_thread = LoopThread()
        self.loop_thread.start()
        try:
            self.loop_thread.run(self._start(), timeout=30)
        except BaseException:
            self.shutdown()
            raise
        assert self.core is not None
        return self.core

    async def _start(self) -> None:
        assert self.loop_thread is not None
        runtime = self.runtime = Runtime(self.loop_thread.loop, self.token,
                                         self.config.max_frame_size,
                                         self.config.connect_timeout)
        await runtime.start("tcp://127.0.0.1:0")
        self.gcs = host_gcs(runtime, self.config)
        config = job_config(self.config, runtime.address)
        job_id = await runtime.request(runtime.address, "gcs", "register_job",
                                       [runtime.address, self.namespace, config])
        node = self.node = NodeServices(runtime, self.config, resources=self.resources,
                                        session_dir=self.session_dir,
                                        gcs_address=runtime.address, token=self.token,
                                        is_head=True)
        prestart = max(1, min(int(math.ceil(self.resources.get("CPU", 1.0))), 32))
        await node.start(prestart, job_id)
        assert node.store is not None
        self.core = CoreWorker(runtime, self.config, mode="driver",
                               raylet_address=runtime.address, gcs_address=runtime.address,
                               node_id=node.node_id, worker_id=ids.new_id(8).hex(),
                               job_id=job_id, namespace=self.namespace,
                               shm_prefix=node.store.prefix, spill_dir=node.store.spill_dir)
        self.core.job_info = {"namespace": self.namespace, "config": config}
        runtime.register_actor("core", self.core)
        session_dir.write_node_info(self.session_dir, node.info())

    def shutdown(self) -> None:
        if self.loop_thread is not None:
            self.loop_thread.finish(self._shutdown(), "shutting down the local cluster")
            self.loop_thread = None

    async def _shutdown(self) -> None:
        if self.gcs is not None:
            self.gcs.stop()
        if self.node is not None:
            await self.node.shutdown()
        if self.core is not None:
            self.core.shared.close()
        if self.runtime is not None:
            await self.runtime.aclose()

    def info(self) -> dict[str, Any]:
        return {"session_dir": self.session_dir, "address": self.runtime.address
                if self.runtime else "", "resources": self.resources,
                "namespace": self.namespace, "node_id": self.node.node_id if self.node else "",
                "object_store_memory": self.store.state.capacity if self.store else 0}
