"""The embedded local cluster: ``init()`` with no address.

The GCS and the node's raylet are actors like any other, so the embedded cluster hosts them on
the driver's own runtime: no extra process to start, and the driver's lease requests never leave
the process. Workers are separate processes; they exit when this process goes away, however it
goes (see worker/main.py).
"""

from __future__ import annotations

import math
import os
import secrets
import subprocess
import sys
from typing import Any

from actorflow._private import ids
from actorflow._private.cluster import enrollment, launcher, pki, session_dir
from actorflow._private.config import Config
from actorflow._private.control.gcs import GCS
from actorflow._private.control.host import host_gcs
from actorflow._private.control.metrics import GCSCollector
from actorflow._private.fd_limit import raise_open_file_limit
from actorflow._private.loop_thread import LoopThread
from actorflow._private.node.object_store import ObjectStore
from actorflow._private.node.raylet import Raylet
from actorflow._private.node.services import NodeServices, node_resources
from actorflow._private.protocol import gcs
from actorflow._private.runtime import Runtime
from actorflow._private.worker.core_worker import CoreWorker
from actorflow._private.worker.runtime_envs import RuntimeEnvs
from transports import TLSConfig


async def upload_job_env(
    runtime: Runtime, config: Config, gcs_address: str, env: dict[str, Any]
) -> dict[str, Any]:
    """The job's runtime_env with its local paths packed and uploaded to the GCS."""
    if not env:
        return {}
    envs = RuntimeEnvs(runtime, config, gcs_address)
    wire, packages = envs.to_wire(env)
    await envs.upload(packages)
    return wire


def job_config(config: Config, driver_address: str) -> dict[str, Any]:
    """What a job's workers need from its driver: its import path and where output goes."""
    # Functions defined in importable modules are pickled by reference: workers import them
    # by the driver's path.
    sys_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    return {"sys_path": sys_path, "log_address": driver_address if config.log_to_driver else ""}


class LocalSession:
    """GCS + one node + worker pool + this driver's core worker, on one runtime loop."""

    def __init__(
        self,
        config: Config,
        *,
        num_cpus: float | None,
        num_gpus: float | None,
        resources: dict[str, float] | None,
        namespace: str | None,
        runtime_env: dict[str, Any] | None = None,
        metrics_export_port: int | None = None,
        dashboard: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        # The web dashboard (a process of its own): start_dashboard's host and port, or None.
        self.dashboard_options = dashboard
        self.dashboard: dict[str, Any] | None = None  # its info once started (url, popen)
        # /metrics of this embedded node (and its GCS): None serves none unless the config
        # says (metrics_export_port >= 0).
        if metrics_export_port is None and config.metrics_export_port >= 0:
            metrics_export_port = config.metrics_export_port
        self.metrics_export_port = metrics_export_port
        self.runtime_env = runtime_env or {}  # the job's, checked (runtime_env/spec.validate)
        self.resources = node_resources(
            num_cpus, num_gpus, resources, config.memory_resource_fraction
        )
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
        raise_open_file_limit()  # this process hosts the store and maps objects
        self.session_dir = session_dir.create(self.config.session_root)
        self.token = secrets.token_bytes(32)
        session_dir.write_token(self.session_dir, self.token)
        self.loop_thread = LoopThread()
        self.loop_thread.start()
        try:
            self.loop_thread.run(self._start(), timeout=30)
            if self.dashboard_options is not None:
                assert self.runtime is not None
                self.dashboard = launcher.start_dashboard(
                    session=self.session_dir,
                    token=self.token,
                    gcs_address=self.runtime.address,
                    watch_pid=os.getpid(),  # it ends with this process, however that ends
                    **self.dashboard_options,
                )
        except BaseException:
            self.shutdown()
            raise
        assert self.core is not None
        return self.core

    async def _start(self) -> None:
        assert self.loop_thread is not None
        tls_dir = ""
        if self.config.tls:  # a CA of its own, as `start --head --tls`; it hosts the GCS
            tls_dir = pki.create_head_dir(os.path.join(self.session_dir, pki.TLS_DIR))
        runtime = self.runtime = Runtime(
            self.loop_thread.loop,
            self.token,
            self.config.max_frame_size,
            self.config.connect_timeout,
            TLSConfig.from_dir(tls_dir, require_client_cert=False) if tls_dir else None,
        )
        if tls_dir:
            runtime.on_uncertified = enrollment.EnrollmentService(self.token, tls_dir).serve
        await runtime.start("tcp://127.0.0.1:0")
        self.gcs = host_gcs(runtime, self.config)
        config = job_config(self.config, runtime.address)
        env_wire = await upload_job_env(runtime, self.config, runtime.address, self.runtime_env)
        if env_wire:
            config["runtime_env"] = env_wire
        job_id = await runtime.ask(
            runtime.address, gcs.RegisterJob(runtime.address, self.namespace, config)
        )
        node = self.node = NodeServices(
            runtime,
            self.config,
            resources=self.resources,
            session_dir=self.session_dir,
            gcs_address=runtime.address,
            token=self.token,
            is_head=True,
            metrics_port=self.metrics_export_port,
            tls_dir=tls_dir,
        )
        node.metrics_port_fallback = True  # as Ray's, whose metrics agent logs and goes on
        node.metrics.add_collector(GCSCollector(self.gcs))
        prestart = max(1, min(int(math.ceil(self.resources.get("CPU", 1.0))), 32))
        await node.start(prestart, job_id)
        assert node.store is not None
        self.core = CoreWorker(
            runtime,
            self.config,
            mode="driver",
            raylet_address=runtime.address,
            gcs_address=runtime.address,
            node_id=node.node_id,
            worker_id=ids.new_id(8).hex(),
            job_id=job_id,
            namespace=self.namespace,
            shm_prefix=node.store.prefix,
            spill_dir=node.store.spill_dir,
            segment_socket=node.store.socket_path,
            local_segments=node.store.segments,
        )
        self.core.job_info = {"namespace": self.namespace, "config": config}
        self.core.runtime_envs.adopt(env_wire)
        runtime.register_actor("core", self.core)
        session_dir.write_node_info(self.session_dir, node.info())

    def shutdown(self) -> None:
        if self.dashboard is not None:
            process = self.dashboard["popen"]
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self.dashboard = None
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
        return {
            "session_dir": self.session_dir,
            "address": self.runtime.address if self.runtime else "",
            "resources": self.resources,
            "namespace": self.namespace,
            "node_id": self.node.node_id if self.node else "",
            "object_store_memory": self.store.state.capacity if self.store else 0,
            "metrics_export_port": self.node.metrics.server.port if self.node else 0,
            "metrics_address": self.node.metrics.server.address if self.node else "",
            "dashboard_url": self._dashboard_url(),
            "webui_url": self._dashboard_url(),
        }

    def _dashboard_url(self) -> str:
        """HOST:PORT, as Ray's dashboard_url ("" with no dashboard)."""
        return str(self.dashboard["url"]).split("://", 1)[-1] if self.dashboard else ""
