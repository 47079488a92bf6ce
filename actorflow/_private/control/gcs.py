"""The GCS (global control store): the cluster's tables, off the per-call path.

Nodes, jobs and a key-value store live here; the actor table and the named-actor registry are
added by the actor manager (gcs_actors.py). Tables are plain dicts; handlers are thin. Every
change is written through to the storage (gcs_storage.py); a GCS started on a storage that has
tables reloads them and then checks which of the processes they name are still there
(``recover``): nodes get a heartbeat's grace to come back, a job whose driver is gone ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from actorflow._private import errors
from actorflow._private.control.storage import MemoryStorage, Storage
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.node import demand
from actorflow._private.protocol import gcs
from actorflow._private.protocol.gcs import DeadNode, PeerNode
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.raylet import JobFinished
from actorflow._private.runtime import Call, Runtime

logger = logging.getLogger("actorflow.gcs")


# Node fields that mean nothing to another process (or after a restart).
_RUNTIME_ONLY = ("last_heartbeat", "idle_since_monotonic")


async def is_reachable(runtime: Runtime, address: str) -> bool:
    """Does a process still answer at address (its core worker's ping)?"""
    try:
        await asyncio.wait_for(runtime.request(address, "core", "ping", None), 10)
        return True
    except (PeerUnreachableError, asyncio.TimeoutError, OSError):
        return False
    except Exception:
        return True  # it answered, if not to this


class GCS:
    def __init__(
        self, runtime: Runtime, node_timeout: float = 10.0, storage: Storage | None = None
    ) -> None:
        self.runtime = runtime
        self.node_timeout = node_timeout
        self.storage = storage or MemoryStorage()
        self._node_conns: dict[str, Any] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.kv: dict[str, dict[bytes, bytes]] = {}
        self.actor_manager: Any = None  # told when a node dies (gcs_actors.py)
        self.placement_groups: Any = None  # told of nodes, reports and ended jobs
        self.dead_nodes: list[DeadNode] = []  # in the order they died
        self._death_waiters: list[asyncio.Future] = []
        self.infeasible_here = demand.InfeasibleLog()  # actors no node could ever host
        self._next_job = 0
        self._monitor: asyncio.Task | None = None

    def start(self) -> None:
        self._monitor = self.runtime.loop.create_task(self._watch_heartbeats())
        if self.placement_groups is not None:
            self.placement_groups.start()

    # -- persistence ----------------------------------------------------------------------------

    def _save_node(self, node: dict[str, Any]) -> None:
        self.storage.put(
            "nodes", node["node_id"], {k: v for k, v in node.items() if k not in _RUNTIME_ONLY}
        )

    def _save_job(self, job: dict[str, Any]) -> None:
        self.storage.put("jobs", job["job_id"], job)

    def load(self) -> dict[str, dict[str, Any]]:
        """Reload the tables a previous GCS left in the storage; the actor tables are the
        actor manager's (returned for it)."""
        tables = self.storage.load()
        now = time.monotonic()
        for node_id, node in tables.get("nodes", {}).items():
            self.nodes[node_id] = dict(node, last_heartbeat=now)  # a grace period to return
        self.jobs = dict(tables.get("jobs", {}))
        self._next_job = max((int(j, 16) for j in self.jobs), default=0)
        for key, value in tables.get("kv", {}).items():
            namespace, _, hex_key = key.rpartition("\x1f")
            self.kv.setdefault(namespace, {})[bytes.fromhex(hex_key)] = value
        self.dead_nodes = [
            DeadNode(n["node_id"], n["address"]) for n in self.nodes.values() if not n["alive"]
        ]
        if self.nodes or self.jobs:
            logger.warning(
                "GCS restored %d nodes, %d jobs and %d actors from its storage",
                len(self.nodes),
                len(self.jobs),
                len(tables.get("actors", {})),
            )
        return tables

    async def recover_all(self) -> None:
        """After a reload, find out what is still there (this GCS and its actor table)."""
        await self.recover()
        if self.actor_manager is not None:
            await self.actor_manager.recover()
        if self.placement_groups is not None:
            await self.placement_groups.recover()

    async def recover(self) -> None:
        """After a reload: jobs whose driver is gone end; the others are watched again."""
        jobs = [job for job in self.jobs.values() if job["alive"]]
        answers = await asyncio.gather(
            *(is_reachable(self.runtime, job["driver_address"]) for job in jobs)
        )
        for job, reachable in zip(jobs, answers, strict=True):
            if reachable:
                self.runtime.on_peer_lost(
                    job["driver_address"], functools.partial(self._job_ended, job["job_id"])
                )
            else:
                self._job_ended(job["job_id"])

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
        if self.placement_groups is not None:
            self.placement_groups.stop()

    # -- nodes ----------------------------------------------------------------------------------

    def handle_register_node(self, payload: list, call: Call) -> None:
        node_id, address, resources, info = decode(gcs.RegisterNode, payload)
        self.nodes[node_id] = dict(
            info,
            node_id=node_id,
            address=address,
            resources=resources,
            alive=True,
            available=dict(resources),
            queued=0,
            registered_at=time.time(),
            last_heartbeat=time.monotonic(),
            death_cause="",
            draining="",
            report={},
            idle_since_monotonic=time.monotonic(),
        )
        self._save_node(self.nodes[node_id])
        self._watch_node_connection(node_id, call)
        self._views_changed(node_id)
        self._resources_changed()

    def _resources_changed(self) -> None:
        if self.placement_groups is not None:
            self.placement_groups.kick()  # pending groups may fit now

    def _watch_node_connection(self, node_id: str, call: Call) -> None:
        """A node whose connection closes is dead (its process ended); after a GCS restart
        the node's heartbeats come on a new connection, which is watched then."""
        conn = call.conn
        if conn is None or self._node_conns.get(node_id) is conn:
            return
        self._node_conns[node_id] = conn

        def lost() -> None:
            if self._node_conns.get(node_id) is conn:
                self._node_lost(node_id)

        call.on_caller_lost(lost)

    def _views_changed(self, except_node: str = "") -> None:
        """Nodes learn of a joined or dead node at once, not at their next heartbeat."""
        for node in self.nodes.values():
            if node["alive"] and node["node_id"] != except_node:
                self.runtime.send_oneway(node["address"], "raylet", "refresh_view", None)

    def handle_heartbeat(self, payload: list, call: Call) -> list[PeerNode]:
        """A node's report of its free resources; answered with every live node's."""
        node_id, available, queued, report = decode(gcs.Heartbeat, payload)
        node = self.nodes.get(node_id)
        if node is None or not node["alive"]:
            cause = node["death_cause"] if node else "it is not registered"
            raise errors.NodeDiedError(
                f"the GCS has marked node {node_id} dead ({cause}); the node exits"
            )
        # A copy: from a raylet in this process the dict is the raylet's own.
        node["available"], node["queued"] = dict(available), queued
        now = node["last_heartbeat"] = time.monotonic()
        if report is not None:
            node["report"] = report
            idle = demand.is_idle(report) and not self._hosts_actors(node_id)
            if not idle:
                node["idle_since_monotonic"] = None
            elif node.get("idle_since_monotonic") is None:
                node["idle_since_monotonic"] = now
        self._watch_node_connection(node_id, call)
        if self.placement_groups is not None and self.placement_groups.has_pending():
            self._resources_changed()
        return [
            PeerNode(n["node_id"], n["address"], n["resources"], n["available"])
            for n in self.nodes.values()
            if n["alive"] and not n.get("draining")
        ]

    def _hosts_actors(self, node_id: str) -> bool:
        manager = self.actor_manager
        if manager is None:
            return False
        return any(r.node_id == node_id and r.state != "DEAD" for r in manager.actors.values())

    def handle_drain_node(self, payload: list, call: Call) -> None:
        """A node is leaving: nothing new is placed there (it is left out of the views the
        nodes and the actor scheduler see); it is dead once its process ends."""
        node_id, reason = decode(gcs.DrainNode, payload)
        node = self.nodes.get(node_id)
        if node is None or not node["alive"]:
            return
        node["draining"] = reason or "draining"
        self._save_node(node)
        logger.warning("node %s at %s drains: %s", node_id, node["address"], node["draining"])
        self._views_changed(node_id)

    def schedulable(self, node: dict[str, Any]) -> bool:
        """Alive and not draining: new work and actors may go there."""
        return bool(node["alive"]) and not node.get("draining")

    def demand(self) -> dict[str, Any]:
        """The cluster's pending demand (node/demand.py): resource shapes of the lease
        requests short of resources (tasks and actors) summed over the nodes, the actors not
        placed yet, requests no node could fit (the last minute's), and per live node whether
        it is idle and since when, for the autoscaler."""
        now = time.monotonic()
        live = [n for n in self.nodes.values() if n["alive"]]
        pending_actors: list[tuple[dict, str]] = []
        if self.actor_manager is not None:
            pending_actors = [
                (r.spec.get("resources") or {}, demand.ACTOR)
                for r in self.actor_manager.actors.values()
                if r.state in ("PENDING", "RESTARTING") and not r.worker_id
            ]
        nodes = []
        for n in live:
            report = n.get("report") or {}
            since = n.get("idle_since_monotonic")
            nodes.append(
                {
                    "node_id": n["node_id"],
                    "address": n["address"],
                    "is_head": bool(n.get("is_head")),
                    "pid": n.get("pid"),
                    "host": n.get("host", ""),
                    "resources": n["resources"],
                    "available": n["available"],
                    "draining": n.get("draining") or "",
                    "idle": since is not None,
                    "idle_seconds": round(now - since, 3) if since is not None else 0.0,
                    "busy": report.get("busy") or {},
                    "hosts_actors": self._hosts_actors(n["node_id"]),
                    "labels": n.get("labels") or {},
                }
            )
        return {
            "pending": demand.merge(
                row for n in live for row in (n.get("report") or {}).get("demand", [])
            ),
            "pending_actors": demand.count_shapes(pending_actors),
            "infeasible": demand.merge(
                row for n in live for row in (n.get("report") or {}).get("infeasible", [])
            )
            + self.infeasible_here.rows(),
            "nodes": nodes,
        }

    def handle_cluster_demand(self, payload: Any, call: Call) -> dict[str, Any]:
        return self.demand()

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.node_timeout / 4))
            now = time.monotonic()
            for node in list(self.nodes.values()):
                if node["alive"] and now - node["last_heartbeat"] > self.node_timeout:
                    self.node_dead(node["node_id"], f"no heartbeat for {self.node_timeout:g} s")

    def _node_lost(self, node_id: str) -> None:
        draining = (self.nodes.get(node_id) or {}).get("draining")
        if draining:
            self.node_dead(node_id, f"drained and ended ({draining})")
        else:
            self.node_dead(node_id, "its connection to the GCS closed (the node process ended)")

    def node_dead(self, node_id: str, cause: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or not node["alive"]:
            return
        node["alive"] = False
        node["death_cause"] = cause
        self._save_node(node)
        logger.warning("node %s at %s is dead: %s", node_id, node["address"], cause)
        if self.placement_groups is not None:  # first: actors that restart wait for it
            self.placement_groups.node_died(node_id)
        if self.actor_manager is not None:
            self.actor_manager.node_died(node_id, node["address"], cause)
        self.dead_nodes.append(DeadNode(node_id, node["address"]))
        waiters, self._death_waiters = self._death_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._views_changed()

    async def handle_wait_node_deaths(self, payload: list, call: Call) -> list[DeadNode]:
        """Long poll: the nodes that died after the first ``known`` ones, once there are any."""
        known = decode(gcs.WaitNodeDeaths, payload).known
        while len(self.dead_nodes) <= known:
            waiter = self.runtime.loop.create_future()
            self._death_waiters.append(waiter)
            await waiter
        return self.dead_nodes[known:]

    def handle_get_nodes(self, payload: Any, call: Call) -> list:
        return [{k: v for k, v in n.items() if k not in _RUNTIME_ONLY} for n in self.nodes.values()]

    # -- jobs -----------------------------------------------------------------------------------

    def handle_register_job(self, payload: list, call: Call) -> str:
        """config has the driver's sys_path and where its workers send their output
        (log_address)."""
        driver_address, namespace, config = decode(gcs.RegisterJob, payload)
        config = config or {}
        self._next_job += 1
        job_id = f"{self._next_job:08x}"
        self.jobs[job_id] = {
            "job_id": job_id,
            "driver_address": driver_address,
            "namespace": namespace,
            "alive": True,
            "started_at": time.time(),
            "config": config,
        }
        self._save_job(self.jobs[job_id])
        if call.conn is not None:
            call.on_caller_lost(lambda: self._job_ended(job_id))
        return job_id

    def _job_ended(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or not job["alive"]:
            return
        job["alive"] = False
        job["ended_at"] = time.time()
        self._save_job(job)
        if self.placement_groups is not None:
            self.placement_groups.job_finished(job_id)
        for node in self.nodes.values():
            if node["alive"]:
                self.runtime.tell(node["address"], JobFinished(job_id))

    def handle_job_info(self, payload: list, call: Call) -> dict | None:
        return self.jobs.get(decode(gcs.JobInfo, payload).job_id)

    def handle_list_jobs(self, payload: Any, call: Call) -> list:
        return list(self.jobs.values())

    # -- key-value ------------------------------------------------------------------------------

    def handle_kv_put(self, payload: list, call: Call) -> bool:
        namespace, key, value, overwrite = decode(gcs.KvPut, payload)
        table = self.kv.setdefault(namespace, {})
        if key in table and not overwrite:
            return False
        table[key] = value
        self.storage.put("kv", f"{namespace}\x1f{key.hex()}", value)
        return True

    def handle_kv_get(self, payload: list, call: Call) -> bytes | None:
        namespace, key = decode(gcs.KvGet, payload)
        return self.kv.get(namespace, {}).get(key)

    def handle_kv_del(self, payload: list, call: Call) -> bool:
        namespace, key = decode(gcs.KvDel, payload)
        self.storage.delete("kv", f"{namespace}\x1f{key.hex()}")
        return self.kv.get(namespace, {}).pop(key, None) is not None

    def drop_actor_state(self, actor_id: str) -> None:
        """The actor is dead for good: what it kept across restarts goes."""
        key = actor_id.encode()
        if self.kv.get(gcs.ACTOR_STATE_NAMESPACE, {}).pop(key, None) is not None:
            self.storage.delete("kv", f"{gcs.ACTOR_STATE_NAMESPACE}\x1f{key.hex()}")

    def handle_kv_keys(self, payload: list, call: Call) -> list:
        namespace, prefix = decode(gcs.KvKeys, payload)
        return [k for k in self.kv.get(namespace, {}) if k.startswith(prefix)]
