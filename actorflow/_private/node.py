"""The embedded local cluster: ``init()`` with no address.

The GCS and the node's raylet are actors like any other, so the embedded cluster hosts them on
the driver's own runtime: no extra process to start, and the driver's lease requests never leave
the process. Workers are separate processes; they exit when this process goes away, however it
goes (see worker_main.py).
"""

from __future__ import annotations

import json
import logging
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
from actorflow._private.loop_thread import LoopThread
from actorflow._private.object_store import ObjectStore, default_capacity
from actorflow._private.raylet import Raylet
from actorflow._private.resources import normalize
from actorflow._private.runtime import Runtime

logger = logging.getLogger("actorflow.node")


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
        self.raylet: Raylet | None = None
        self.gcs: GCS | None = None
        self.core: CoreWorker | None = None
        self.store: ObjectStore | None = None

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
        self.gcs = GCS(runtime)
        runtime.register_actor("gcs", self.gcs)
        runtime.register_actor("actors", ActorManager(runtime, self.gcs))
        node_id = ids.new_id(8).hex()
        job_id = await runtime.request(runtime.address, "gcs", "register_job",
                                       [runtime.address, self.namespace])
        store = self.store = ObjectStore(
            runtime, node_id=node_id,
            capacity=self.config.object_store_memory or default_capacity(),
            spill_dir=self.config.object_spilling_directory
            or os.path.join(self.session_dir, "spill"))
        store.start()
        runtime.register_actor("store", store)
        self.raylet = Raylet(
            runtime, self.config, node_id=node_id, resources=self.resources,
            session_dir=self.session_dir, gcs_address=runtime.address,
            worker_env=self._worker_env(runtime.address, node_id, job_id),
            prestart=max(1, min(int(math.ceil(self.resources.get("CPU", 1.0))), 32)),
        )
        self.raylet.on_worker_gone = store.process_gone
        runtime.register_actor("raylet", self.raylet)
        self.core = CoreWorker(runtime, self.config, mode="driver",
                               raylet_address=runtime.address, gcs_address=runtime.address,
                               node_id=node_id, worker_id=ids.new_id(8).hex(), job_id=job_id,
                               namespace=self.namespace, shm_prefix=store.prefix,
                               spill_dir=store.spill_dir)
        runtime.register_actor("core", self.core)
        await self.raylet.start()
        session_dir.write_node_info(self.session_dir, {
            "address": runtime.address, "gcs_address": runtime.address, "node_id": node_id,
            "pid": os.getpid(), "object_store_memory": store.state.capacity})

    def _worker_env(self, address: str, node_id: str, job_id: str) -> dict[str, str]:
        return {
            "ACTORFLOW_TOKEN": self.token.hex(),
            "ACTORFLOW_RAYLET_ADDRESS": address,
            "ACTORFLOW_GCS_ADDRESS": address,
            "ACTORFLOW_NODE_ID": node_id,
            "ACTORFLOW_JOB_ID": job_id,
            "ACTORFLOW_NAMESPACE": self.namespace,
            "ACTORFLOW_SESSION_DIR": self.session_dir,
            "ACTORFLOW_SHM_PREFIX": self.store.prefix if self.store else "",
            "ACTORFLOW_SPILL_DIR": self.store.spill_dir if self.store else "",
            "ACTORFLOW_LOG_ADDRESS": address if self.config.log_to_driver else "",
            "ACTORFLOW_PARENT_PID": str(os.getpid()),
            # Workers import the driver's modules by the driver's path (functions defined in
            # importable modules are pickled by reference).
            "ACTORFLOW_SYS_PATH": json.dumps([os.path.abspath(p) if p else os.getcwd()
                                              for p in sys.path]),
        }

    def shutdown(self) -> None:
        if self.loop_thread is None:
            return
        try:
            self.loop_thread.run(self._shutdown(), timeout=15)
        except Exception:
            logger.exception("error while shutting down the local cluster")
        self.loop_thread.stop()
        self.loop_thread = None

    async def _shutdown(self) -> None:
        if self.raylet is not None:
            await self.raylet.shutdown()
        if self.core is not None:
            self.core.shared.close()
        if self.store is not None:
            self.store.shutdown()
        if self.runtime is not None:
            await self.runtime.aclose()

    def info(self) -> dict[str, Any]:
        return {"session_dir": self.session_dir, "address": self.runtime.address
                if self.runtime else "", "resources": self.resources,
                "namespace": self.namespace,
                "object_store_memory": self.store.state.capacity if self.store else 0}
