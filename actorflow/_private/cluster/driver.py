"""A driver that joins a running cluster: ``init(address="HOST:PORT" | "auto")``.

The driver is a process of its own with a runtime on a loop thread. It registers its job with
the GCS and uses the node on its own machine (its raylet and its shared-memory store), as a
Ray driver does: a cluster with no node on this machine cannot take a driver here.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from actorflow._private import errors, ids
from actorflow._private.cluster import enrollment, session_dir
from actorflow._private.cluster.launcher import cluster_token, tcp_address
from actorflow._private.cluster.local import job_config, upload_job_env
from actorflow._private.config import Config, env_address
from actorflow._private.errors import NoTokenError, PeerUnreachableError
from actorflow._private.fd_limit import raise_open_file_limit
from actorflow._private.loop_thread import LoopThread
from actorflow._private.node.services import host_of
from actorflow._private.protocol import gcs
from actorflow._private.protocol.raylet import PrepareRuntimeEnv
from actorflow._private.runtime import Runtime
from actorflow._private.runtime_env.spec import eager_install
from actorflow._private.worker.core_worker import CoreWorker


def resolve_address(address: str, config: Config) -> str:
    """tcp://HOST:PORT of the GCS: "auto" is ACTORFLOW_ADDRESS or the newest live head
    started on this machine."""
    if address != "auto":
        return _checked(address)
    if env_address():
        return _checked(env_address())
    for path in session_dir.sessions(config.session_root):
        info = session_dir.read_json(os.path.join(path, "node.json"))
        running = info is not None and session_dir.pid_running(int(info.get("pid", 0)))
        if info and info.get("is_head") and running and not _embedded(info, path):
            return str(info["gcs_address"])
    raise ConnectionError(
        f"init(address='auto'): no running cluster was found on this machine (under "
        f"{config.session_root}); start one with `actorflow start --head`, or pass its address"
    )


def _checked(address: str) -> str:
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        raise ConnectionError(
            f"init(address={address!r}): {scheme}:// addresses are not "
            f"supported (there is no client mode); give the head's HOST:PORT"
        )
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"init(address={address!r}): expected 'HOST:PORT' (as printed by "
            f"`actorflow start --head`) or 'auto'"
        )
    return tcp_address(rest)


def _check_reachable(address: str, timeout: float) -> None:
    host, port = host_of(address), int(address.rsplit(":", 1)[1])
    try:
        socket.create_connection((host, port), timeout=min(timeout, 5.0)).close()
    except OSError as exc:
        raise ConnectionError(
            f"init(address={address!r}): no actorflow cluster answers there ({exc})"
        ) from None


def _embedded(info: dict, path: str) -> bool:
    """A driver's embedded cluster lists no node processes: it is not for other drivers."""
    return not session_dir.node_files(path)


def local_ip_towards(address: str) -> str:
    """The address of this machine's interface that reaches address (a loopback address for
    a loopback GCS), so that the cluster can call this driver back."""
    host, port = host_of(address), int(address.rsplit(":", 1)[1])
    if host.startswith("127.") or host == "localhost":
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))  # no packet is sent: this only picks the route
        return str(probe.getsockname()[0])


class ClusterDriver:
    """This process as a driver of a running cluster (the counterpart of LocalSession)."""

    def __init__(
        self,
        config: Config,
        address: str,
        namespace: str | None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.runtime_env = runtime_env or {}  # the job's, checked
        self.gcs_address = resolve_address(address, config)
        self.namespace = namespace or f"anonymous-{ids.new_id(4).hex()}"
        try:
            self.token, found = cluster_token(self.gcs_address, config.session_root)
        except NoTokenError:  # nothing there at all is the clearer error
            _check_reachable(self.gcs_address, config.connect_timeout)
            raise
        self.session_dir = found or ""
        self.loop_thread: LoopThread | None = None
        self.runtime: Runtime | None = None
        self.core: CoreWorker | None = None
        self.node: dict[str, Any] = {}
        self.raylet = None  # lives in the node's process
        self.store = None

    def start(self) -> CoreWorker:
        raise_open_file_limit()  # the driver maps objects too, and may host the store
        self.loop_thread = LoopThread()
        self.loop_thread.start()
        try:
            self.loop_thread.run(self._start(), timeout=self.config.connect_timeout + 20)
        except BaseException:
            self.shutdown()
            raise
        assert self.core is not None
        return self.core

    async def _start(self) -> None:
        assert self.loop_thread is not None
        runtime = self.runtime = Runtime(
            self.loop_thread.loop,
            self.token,
            self.config.max_frame_size,
            self.config.connect_timeout,
        )
        host = local_ip_towards(self.gcs_address)
        runtime.tls = await enrollment.client_tls(
            self.gcs_address, self.token, self.session_dir, self.config, name="driver"
        )
        await runtime.start(f"tcp://{host}:0")
        try:
            nodes = await runtime.request(self.gcs_address, "gcs", "get_nodes", None)
        except errors.TLSError as exc:
            raise errors.TLSError(f"init(address={self.gcs_address!r}): {exc}") from None
        except errors.AuthenticationError as exc:
            raise errors.AuthenticationError(
                f"init(address={self.gcs_address!r}): the cluster refused this driver's token "
                f"({exc}); set ACTORFLOW_TOKEN to the token file's contents in the head's "
                f"session directory"
            ) from None
        except PeerUnreachableError as exc:
            raise ConnectionError(
                f"init(address={self.gcs_address!r}): no actorflow cluster answers there ({exc})"
            ) from None
        node = self._local_node(nodes, host)
        config = job_config(self.config, runtime.address)
        env_wire = await upload_job_env(runtime, self.config, self.gcs_address, self.runtime_env)
        if env_wire:
            config["runtime_env"] = env_wire
        job_id = await runtime.ask(
            self.gcs_address, gcs.RegisterJob(runtime.address, self.namespace, config)
        )
        self.node = node
        self.session_dir = self.session_dir or node.get("session_dir", "")
        self.core = CoreWorker(
            runtime,
            self.config,
            mode="driver",
            raylet_address=node["address"],
            gcs_address=self.gcs_address,
            node_id=node["node_id"],
            worker_id=ids.new_id(8).hex(),
            job_id=job_id,
            namespace=self.namespace,
            shm_prefix=node.get("shm_prefix", ""),
            spill_dir=node.get("spill_dir", ""),
            segment_socket=node.get("segment_socket", ""),
        )
        self.core.job_info = {"namespace": self.namespace, "config": config}
        self.core.runtime_envs.adopt(env_wire)
        if env_wire and eager_install(env_wire):  # as Ray: set up on every node now
            for other in nodes:
                if other.get("alive"):
                    runtime.tell(other["address"], PrepareRuntimeEnv(job_id, env_wire))
        runtime.register_actor("core", self.core)

    def _local_node(self, nodes: list[dict], host: str) -> dict:
        here = [n for n in nodes if n.get("alive") and n.get("host") == host]
        if not here:
            raise ConnectionError(
                f"init(address={self.gcs_address!r}): no live node of that cluster runs on this "
                f"machine ({host}); a driver uses its own machine's node: start one with "
                f"`actorflow start --address {self.gcs_address.split('://')[-1]}`"
            )
        return sorted(here, key=lambda n: (not n.get("is_head"), n.get("registered_at", 0)))[0]

    def shutdown(self) -> None:
        if self.loop_thread is not None:
            self.loop_thread.finish(self._shutdown(), "leaving the cluster")
            self.loop_thread = None

    async def _shutdown(self) -> None:
        if self.core is not None:
            # The job's last task events reach the GCS before it leaves (briefly: a GCS that
            # does not answer does not hold the exit up).
            try:
                await asyncio.wait_for(self.core.task_events.flush_all(), 2.0)
            except asyncio.TimeoutError:
                pass
            self.core.shared.close()
        if self.runtime is not None:
            await self.runtime.aclose()

    def info(self) -> dict[str, Any]:
        return {
            "session_dir": self.session_dir,
            "address": self.gcs_address,
            "node_id": self.node.get("node_id", ""),
            "namespace": self.namespace,
            "resources": self.node.get("resources", {}),
            "object_store_memory": self.node.get("object_store_memory", 0),
        }
