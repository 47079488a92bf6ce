"""The raylet: one per node. It owns the node's resources and worker pool and grants leases.

A lease is the right to run work of a resource shape on one worker. The caller asks for a lease,
gets a worker's address, pushes tasks straight to that worker, and returns the lease when it has no
more work of that shape. The raylet is off the per-task path while a lease is held.

A task blocked in ``get`` gives its CPUs back until it resumes (as in Ray), so that tasks that
wait on other tasks cannot deadlock a node.

Workers belong to one job (its driver's import path, namespace and output): a lease names its
job, and only that job's idle workers serve it. A request this node should not run (it cannot
fit here, it fits better elsewhere now, or its strategy says another node) is answered with
``["spillback", raylet_address, node_id]``; the caller asks that raylet instead. The raylet knows
the other nodes from its heartbeat answers (scheduling.py decides).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actorflow._private import errors, ids
from actorflow._private.config import Config
from actorflow._private.node import demand
from actorflow._private.node.bundles import BundleTable, Key, bundle_node
from actorflow._private.node.env_pools import EnvPools, Pool
from actorflow._private.node.resources import NodeResources, normalize
from actorflow._private.node.scheduling import NodeView, Scheduler
from actorflow._private.node.worker_pool import (
    DEAD,
    IDLE,
    LEASED,
    STARTING,
    WorkerPool,
    WorkerProcess,
)
from actorflow._private.protocol import actors, gcs, placement_groups, raylet
from actorflow._private.protocol.message import decode, spec_of
from actorflow._private.protocol.worker import DrainWorker
from actorflow._private.protocol.worker_spec import WorkerSpec
from actorflow._private.runtime import Call, Runtime
from actorflow._private.runtime_env.agent import EnvAgent

logger = logging.getLogger("actorflow.raylet")


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("could not tell the GCS: %s", task.exception())


@dataclass(eq=False)
class Lease:
    lease_id: str
    worker: WorkerProcess
    resources: dict[str, float]
    dedicated: bool
    gpu_ids: list[int]
    blocked: bool = False
    holder: Any = None
    bundle: Key | None = None  # the placement-group bundle it takes from (None: the node)


@dataclass(eq=False)
class LeaseRequest:
    resources: dict[str, float]
    dedicated: bool
    job_id: str
    future: asyncio.Future
    holder: Any  # the connection of the caller (None for a caller in this process)
    pool: Pool  # the workers it may use: its job's, of its runtime_env (env_pools.py)
    bundle: Key | None = None  # (placement group, bundle index or -1): lease from its bundle
    chosen: Key | None = None  # the bundle dispatch found room in
    short_of_resources: bool = False  # the last dispatch found no room for it (demand)
    movable: bool = True  # may go to another node with room (no node affinity or SPREAD)


class Raylet:
    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        *,
        node_id: str,
        resources: dict[str, float],
        session_dir: str,
        gcs_address: str,
        worker_spec: WorkerSpec,
        node_info: dict[str, Any] | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.node_id = node_id
        self.resources = NodeResources(resources)
        self.bundles = BundleTable(self.resources)  # placement-group bundles carved out of it
        self._bundle_turn = 0
        self.gcs_address = gcs_address
        self.node_info = dict(node_info or {})  # registered with the GCS (for tools and peers)
        self.on_worker_gone: Callable[[str], None] | None = None  # the node's object store
        self.on_node_dead: Callable[[str], None] | None = None  # the GCS says we are dead
        self.prestart = 0
        self.prestart_job = ""
        self._prestart_pool: Pool | None = None
        self.pool = WorkerPool(
            session_dir=session_dir,
            on_exit=self._on_worker_exit,
            use_forkserver=config.use_forkserver,
        )
        self.leases: dict[str, Lease] = {}
        self.queue: deque[LeaseRequest] = deque()
        self._idle: dict[Pool, deque[WorkerProcess]] = {}  # (job, env) -> its idle workers
        # Runtime envs set up in this node's own cache directory (runtime_env/agent.py).
        agent = EnvAgent(
            os.path.join(session_dir, "runtime_resources", node_id),
            self._ask_gcs,
            config.runtime_env_setup_timeout_seconds,
        )
        self.envs = EnvPools(agent, self._env_setup_done)
        self._job_envs: dict[str, dict] = {}  # job id -> the job's runtime_env (wire form)
        self.worker_spec = worker_spec  # the node's part; a job's workers get _job_specs[job]
        self._job_specs: dict[str, WorkerSpec] = {}
        self._leases_by_holder: dict[Any, set[str]] = {}
        self._orphaned: set[str] = set()  # actor leases whose GCS connection closed
        self._start_failures = 0
        self._closing = False
        self._tasks: list[asyncio.Task] = []
        self.scheduler = Scheduler()
        self.peers: dict[str, NodeView] = {}  # other live nodes, as of the last heartbeat
        self._beat_now = asyncio.Event()
        # Health (/healthz) and draining (drain()): registered with the GCS, the last
        # heartbeat's outcome, and whether this node is leaving.
        self.registered = False
        self.last_heartbeat_ok = 0.0  # monotonic time of the last answered heartbeat
        self.heartbeat_error = ""  # why the last heartbeat failed ("" if it was answered)
        self.draining = ""  # why this node drains ("" while it does not)
        self.infeasible = demand.InfeasibleLog()
        self._moved: list[tuple[float, str, dict[str, float]]] = []  # (when, to node, shape)
        self.primary_objects: Callable[[], int] = lambda: 0  # the node's store counts them

    async def start(self, prestart: int = 0, prestart_job: str = "") -> None:
        await self.runtime.ask(
            self.gcs_address,
            gcs.RegisterNode(
                self.node_id, self.runtime.address, self.resources.total, self.node_info
            ),
        )
        self.registered, self.last_heartbeat_ok = True, time.monotonic()
        self.prestart, self.prestart_job = prestart, prestart_job
        if prestart_job:
            await self._ensure_job_env(prestart_job)
            self._prestart_pool = self.envs.pool_of(prestart_job, self._job_envs.get(prestart_job))
            if self.envs.eager(self._prestart_pool) and self.envs.ready(self._prestart_pool):
                for _ in range(prestart):
                    self._spawn(self._prestart_pool)
        self._tasks = [
            self.runtime.loop.create_task(self._reap_idle_workers()),
            self.runtime.loop.create_task(self._heartbeats()),
        ]

    async def shutdown(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for request in self.queue:
            if not request.future.done():
                request.future.set_exception(errors.ActorflowError("the node is shutting down"))
        self.queue.clear()
        await self.envs.agent.aclose()
        await self.pool.shutdown()

    # -- workers --------------------------------------------------------------------------------

    def _spawn(self, pool: Pool) -> None:
        if self._closing:
            return
        # The worker is counted as starting from now on, before its process exists.
        worker = self.pool.new_worker()
        worker.extra["job_id"], worker.extra["pool"] = pool[0], pool
        spec = self.envs.spec_for(pool, self._job_specs.get(pool[0], self.worker_spec))
        task = self.runtime.loop.create_task(self.pool.launch(worker, spec))
        task.add_done_callback(self._spawned)

    def _env_setup_done(self, pool: Pool, error: BaseException | None) -> None:
        """A pool's runtime_env is set up here (its workers can start), or it failed: its queued
        requests fail with that error, never wait forever."""
        if error is None:
            if pool == self._prestart_pool and not self._closing:
                for _ in range(max(0, self.prestart - self.pool.count(STARTING, IDLE, LEASED))):
                    self._spawn(pool)
            self._dispatch()
            return
        logger.warning("runtime_env setup failed: %s", error)
        for request in [r for r in self.queue if r.pool == pool]:
            self.queue.remove(request)
            if not request.future.done():
                request.future.set_exception(error)
        self._dispatch()

    async def _ensure_job_env(self, job_id: str, job: dict | None = None) -> None:
        """The WorkerSpec of a job's workers: they import its driver's modules and forward output
        to its driver. The lease request carries the job's config (so a node serves a new job
        while the GCS is away); the GCS is asked otherwise."""
        if job_id in self._job_specs:
            return
        if job is None:
            job = await self._ask_gcs(gcs.JobInfo(job_id))
        if job is None:
            raise errors.ActorflowError(f"job {job_id} is not known to the cluster")
        config = job.get("config") or {}
        self._job_envs[job_id] = config.get("runtime_env") or {}
        self._job_specs[job_id] = self.worker_spec.replace(
            job_id=job_id,
            namespace=job.get("namespace") or "",
            log_address=config.get("log_address") or "",
            sys_path=tuple(config.get("sys_path") or ()),
        )

    async def _ask_gcs(self, message: Any) -> Any:
        """A GCS request that waits out a GCS restart (up to gcs_reconnect_seconds)."""
        spec = spec_of(type(message))
        return await self.runtime.request_until_reachable(
            self.gcs_address, spec.target, spec.method, message, self.config.gcs_reconnect_seconds
        )

    def handle_prepare_runtime_env(self, payload: list, call: Call | None) -> None:
        """Set a job's env up ahead of its work (a failure is logged; work asks again)."""
        job_id, wire = decode(raylet.PrepareRuntimeEnv, payload)
        if not self._closing:
            self.envs.ready(self.envs.pool_of(job_id, wire))

    def handle_job_finished(self, payload: list, call: Call | None) -> None:
        """The job's driver is gone: its idle workers end (leased ones end with their lease)."""
        job_id = decode(raylet.JobFinished, payload).job_id
        for pool in [p for p in self._idle if p[0] == job_id]:
            for worker in self._idle.pop(pool):
                if worker.state == IDLE:
                    worker.state = DEAD
                    self.pool.kill(worker)
        self._job_specs.pop(job_id, None)
        self._job_envs.pop(job_id, None)

    def _spawned(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        logger.error("could not start a worker process: %s", task.exception())
        self._start_failures += 1
        self._fail_queue_if_workers_cannot_start(str(task.exception()))

    def handle_register_worker(self, payload: list, call: Call) -> dict:
        worker_id, address, pid = decode(raylet.RegisterWorker, payload)
        worker = self.pool.workers.get(worker_id)
        if worker is None:
            raise LookupError(f"unknown worker {worker_id}: not started by this node")
        worker.address, worker.pid = address, pid
        worker.state = IDLE
        worker.idle_since = time.monotonic()
        self._start_failures = 0
        self._idle.setdefault(worker.extra["pool"], deque()).append(worker)
        self._dispatch()
        return {"node_id": self.node_id}

    def handle_keep_worker(self, payload: list, call: Call | None) -> None:
        """The worker owns actors or objects others use: never end it for being idle."""
        worker = self.pool.workers.get(decode(raylet.KeepWorker, payload).worker_id)
        if worker is not None:
            worker.extra["keep"] = True

    def _on_worker_exit(self, worker: WorkerProcess) -> None:
        if worker.address and self.on_worker_gone is not None:
            self.on_worker_gone(worker.address)
        if worker.extra.get("dedicated"):
            # A request, resent while the GCS is restarting: it decides the actor's fate.
            report = self.runtime.loop.create_task(
                self._ask_gcs(actors.ActorWorkerExited(worker.worker_id, worker.exit_code))
            )
            report.add_done_callback(_log_failure)
        if worker.lease_id is not None:
            lease = self.leases.pop(worker.lease_id, None)
            if lease is not None:
                self._release(lease)
        if worker.exit_code not in (0, None) and not self._closing:
            logger.debug("worker pid %s exited with code %s", worker.pid, worker.exit_code)
        if worker.address == "" and not self._closing and not worker.extra.get("killed"):
            # It died before registering: something is wrong with starting workers.
            self._start_failures += 1
            self._fail_queue_if_workers_cannot_start(
                f"worker process {worker.pid} exited with code {worker.exit_code} before it "
                f"registered; see {worker.log_path}"
            )
        self._dispatch()

    def _fail_queue_if_workers_cannot_start(self, reason: str) -> None:
        if self._start_failures < 3:
            self._dispatch()
            return
        for request in self.queue:
            if not request.future.done():
                request.future.set_exception(
                    errors.WorkerCrashedError(f"workers on this node fail to start: {reason}")
                )
        self.queue.clear()

    async def _reap_idle_workers(self) -> None:
        """Workers above the pre-started count exit after idling for a while."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            alive = self.pool.count(STARTING, IDLE, LEASED)
            for idle in self._idle.values():
                for worker in list(idle):
                    if alive <= self.prestart:
                        break
                    if worker.extra.get("keep"):
                        continue
                    if now - worker.idle_since > self.config.idle_worker_seconds:
                        idle.remove(worker)
                        worker.state = DEAD
                        self.pool.kill(worker)
                        alive -= 1

    # -- leases ---------------------------------------------------------------------------------

    async def handle_request_lease(self, payload: list, call: Call) -> tuple:
        """A worker for a resource shape (protocol.raylet.RequestLease): answered with a Lease,
        or a Spillback to the node the scheduler picked."""
        asked = decode(raylet.RequestLease, payload)
        resources, dedicated = normalize(asked.resources), bool(asked.dedicated)
        job_id = asked.job_id if asked.job_id is not None else self.prestart_job
        strategy, spilled = asked.strategy, bool(asked.spilled)
        bundle: Key | None = None
        if isinstance(strategy, list) and strategy and strategy[0] == "pg":
            pg_id, index = str(strategy[1]), int(strategy[2])
            elsewhere = await self._bundle_node(pg_id, index, resources, spilled)
            if elsewhere is not None:
                return raylet.Spillback("spillback", elsewhere[1], elsewhere[0])
            bundle = (pg_id, index)
        # Before the decision: nothing may await between it and queueing the request, or a
        # burst of requests would all see this node as free.
        await self._ensure_job_env(job_id, asked.job)
        if bundle is not None:
            pass  # it runs here, in the group's bundle
        elif self.draining:
            target = self._elsewhere(resources, strategy)
            target.take(resources)
            return raylet.Spillback("spillback", target.address, target.node_id)
        elif not (spilled and self.resources.feasible(resources)):
            try:
                target = self.scheduler.pick(
                    [self._self_view(), *self.peers.values()], resources, strategy, self.node_id
                )
            except errors.TaskUnschedulableError:
                # The view may predate a node that just joined: decide again on a fresh one.
                if not await self._fresh_view():
                    self.infeasible.add(resources, demand.ACTOR if dedicated else demand.TASK)
                    raise
                try:
                    target = self.scheduler.pick(
                        [self._self_view(), *self.peers.values()], resources, strategy, self.node_id
                    )
                except errors.TaskUnschedulableError:
                    self.infeasible.add(resources, demand.ACTOR if dedicated else demand.TASK)
                    raise
            if target.node_id != self.node_id:
                target.take(resources)
                return raylet.Spillback("spillback", target.address, target.node_id)
        pool = self.envs.pool_of(job_id, asked.runtime_env)
        request = LeaseRequest(
            resources,
            dedicated,
            job_id,
            self.runtime.loop.create_future(),
            call.conn,
            pool,
            bundle,
            movable=strategy is None,
        )
        self.queue.append(request)
        self._dispatch()
        lease: Lease | raylet.Spillback = await request.future
        if isinstance(lease, raylet.Spillback):  # moved on: a node with room joined, or draining
            return lease
        if call.conn is not None:
            held = self._leases_by_holder.get(call.conn)
            if held is None:
                held = self._leases_by_holder[call.conn] = set()
                conn = call.conn
                call.on_caller_lost(lambda: self._holder_lost(conn))
            held.add(lease.lease_id)
            lease.holder = call.conn
        gpu_ids = lease.gpu_ids if self.resources.gpu_free else None
        return raylet.Lease(lease.lease_id, lease.worker.worker_id, lease.worker.address, gpu_ids)

    def _self_view(self) -> NodeView:
        """This node as the scheduler sees it: what is free after the queued requests."""
        available = dict(self.resources.available)
        for request in self.queue:
            if request.bundle is not None:
                continue  # takes from its bundle, carved out already
            for k, v in request.resources.items():
                available[k] = available.get(k, 0.0) - v
        return NodeView(self.node_id, self.runtime.address, self.resources.total, available)

    def _elsewhere(self, resources: dict[str, float], strategy: Any) -> NodeView:
        """While draining: another node for a request (TaskUnschedulableError if none could
        ever fit it)."""
        if isinstance(strategy, list) and strategy[:1] == ["node"]:
            strategy = None  # this node is leaving: affinity to it cannot hold
        try:
            return self.scheduler.pick(list(self.peers.values()), resources, strategy, "")
        except errors.TaskUnschedulableError as exc:
            raise errors.TaskUnschedulableError(
                f"node {self.node_id} is draining ({self.draining}) and {exc}"
            ) from None

    def _peers_after_moves(self) -> list[NodeView]:
        """The peers, less what was moved to them lately: their reports may not count it yet
        (a node's report is up to a heartbeat old), and a request moved on a stale view would
        only queue there."""
        horizon = time.monotonic() - 3 * self.config.heartbeat_seconds
        self._moved = [m for m in self._moved if m[0] >= horizon]
        peers = {
            node_id: NodeView(p.node_id, p.address, p.total, dict(p.available))
            for node_id, p in self.peers.items()
        }
        for _, node_id, resources in self._moved:
            if node_id in peers:
                peers[node_id].take(resources)
        return list(peers.values())

    def _move_queued(self) -> None:
        """Requests waiting here for resources go to a node that has room for them now (one
        that joined since), and while draining every queued request goes elsewhere."""
        if not self.peers and not self.draining:
            return
        peers = self._peers_after_moves()
        for request in list(self.queue):
            if request.future.done() or request.bundle is not None:
                continue
            if not self.draining and not (request.short_of_resources and request.movable):
                continue
            try:
                if self.draining:
                    target = self._elsewhere(request.resources, None)
                else:
                    fitting = [p for p in peers if p.fits(request.resources)]
                    if not fitting:
                        continue
                    target = self.scheduler.pick(fitting, request.resources, None, "")
            except errors.TaskUnschedulableError as exc:
                self.queue.remove(request)
                request.future.set_exception(exc)
                continue
            target.take(request.resources)
            self._moved.append((time.monotonic(), target.node_id, request.resources))
            self.queue.remove(request)
            request.future.set_result(raylet.Spillback("spillback", target.address, target.node_id))

    def report(self) -> dict[str, Any]:
        """What the GCS sums for the autoscaler: the queued requests short of resources (not
        those only waiting for a worker process to start), the infeasible ones of late, and
        what keeps the node busy (node/demand.py)."""
        queued = [
            (r.resources, demand.ACTOR if r.dedicated else demand.TASK)
            for r in self.queue
            if r.short_of_resources and not r.future.done()
        ]
        return {
            "demand": demand.count_shapes(queued),
            "infeasible": self.infeasible.rows(),
            "busy": {
                "leases": len(self.leases),
                "queued": len(self.queue),
                "kept_workers": sum(
                    1
                    for w in self.pool.workers.values()
                    if w.extra.get("keep") and w.state in (STARTING, IDLE, LEASED)
                ),
                "primary_objects": self.primary_objects(),
            },
            "draining": self.draining,
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive and registered with the GCS (its last heartbeat was answered, and recently):
        (healthy, the reason as a JSON-able dict) for /healthz."""
        since = time.monotonic() - self.last_heartbeat_ok
        body: dict[str, Any] = {
            "node_id": self.node_id,
            "gcs_address": self.gcs_address,
            "registered": self.registered,
            "draining": bool(self.draining),
            "seconds_since_heartbeat": round(since, 3) if self.registered else None,
        }
        if not self.registered:
            reason = "not registered with the GCS yet"
        elif self.draining:
            reason = f"draining: {self.draining}"
        elif self.heartbeat_error:
            reason = f"the GCS is unreachable: {self.heartbeat_error}"
        elif since > self.config.node_timeout_seconds:
            reason = f"no heartbeat answered for {since:.1f} s"
        else:
            return True, dict(body, status="ok", reason="alive and registered with the GCS")
        return False, dict(body, status="unhealthy", reason=reason)

    async def drain(self, reason: str, grace: float) -> int:
        """Leave the cluster gracefully: tell the GCS (no new leases or actors come here),
        send queued requests elsewhere, let the task workers finish what they run (they send
        new tasks back to their owners), for at most grace seconds. Returns how many task
        workers were still running when the grace period ended (the node's shutdown kills
        them; their owners retry the tasks elsewhere)."""
        self.draining = reason or "the node is draining"
        try:
            await asyncio.wait_for(
                self._ask_gcs(gcs.DrainNode(self.node_id, self.draining)), max(grace, 1.0)
            )
        except Exception as exc:  # the GCS is away: drain anyway
            logger.warning("could not tell the GCS this node drains: %s", exc)
        self._beat_now.set()
        self._move_queued()
        busy = [
            lease.worker
            for lease in self.leases.values()
            if not lease.dedicated and lease.worker.address
        ]
        asks: list[asyncio.Future] = [
            self.runtime.ask(w.address, DrainWorker(self.draining)) for w in busy
        ]
        if not asks:
            return 0
        done, pending = await asyncio.wait(asks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.debug("a worker did not drain: %s", task.exception())
        if pending:
            logger.warning(
                "%d task worker(s) still running after the %g s drain grace period: ended "
                "(their tasks are retried elsewhere)",
                len(pending),
                grace,
            )
        return len(pending)

    # -- the cluster ----------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """Report what is free here; learn the other nodes from the answer. A GCS that says
        this node is dead (it missed heartbeats) ends it, as in Ray."""
        while True:
            try:
                view = await self.runtime.ask(
                    self.gcs_address,
                    gcs.Heartbeat(
                        self.node_id, self.resources.available, len(self.queue), self.report()
                    ),
                )
            except errors.NodeDiedError as exc:
                logger.error("%s", exc)
                if self.on_node_dead is not None:
                    self.on_node_dead(str(exc))
                return
            except Exception as exc:  # the GCS is unreachable for now: keep serving
                logger.debug("heartbeat failed: %s", exc)
                self.heartbeat_error = str(exc) or type(exc).__name__
            else:
                self._learn(view)
            self._beat_now.clear()
            try:
                await asyncio.wait_for(self._beat_now.wait(), self.config.heartbeat_seconds)
            except asyncio.TimeoutError:
                pass

    def _learn(self, view: list) -> None:
        """A heartbeat's answer: the live nodes, with what they have free."""
        self.last_heartbeat_ok, self.heartbeat_error = time.monotonic(), ""
        # Copies: from a GCS in this process these are its own dicts.
        self.peers = {
            node_id: NodeView(node_id, address, dict(resources), dict(available))
            for node_id, address, resources, available in view
            if node_id != self.node_id
        }
        self._move_queued()

    async def _fresh_view(self) -> bool:
        """Report and learn the cluster now (a request seemed to fit nowhere: a node may have
        joined since the last heartbeat); False if the GCS did not answer."""
        try:
            view = await asyncio.wait_for(
                self.runtime.ask(
                    self.gcs_address,
                    gcs.Heartbeat(
                        self.node_id, self.resources.available, len(self.queue), self.report()
                    ),
                ),
                self.config.connect_timeout,
            )
        except Exception:
            return False
        self._learn(view)
        return True

    def handle_refresh_view(self, payload: Any, call: Call | None) -> None:
        """The GCS says a node joined or died: report and learn the new view now."""
        self._beat_now.set()

    def _holder_lost(self, conn: Any) -> None:
        """The caller's connection closed: its leases come back, and its workers are not
        trusted to be idle (they may still run its tasks), so they are ended."""
        for lease_id in self._leases_by_holder.pop(conn, set()):
            lease = self.leases.get(lease_id)
            if lease is not None and lease.dedicated:
                # An actor's, from a GCS that went away: a restarted GCS keeps the ones its
                # tables know and reclaims the others (reclaim_orphaned_leases).
                self._orphaned.add(lease_id)
                continue
            self._return(lease_id, kill_worker=True)

    def handle_reclaim_orphaned_leases(self, payload: list, call: Call) -> int:
        """From a restarted GCS: the actor leases of its predecessor that it does not know
        (an actor it was still creating, which it creates again) end; the count."""
        known = set(decode(raylet.ReclaimOrphanedLeases, payload).known)
        stale = self._orphaned - known
        self._orphaned.clear()
        for lease_id in stale:
            self._return(lease_id, kill_worker=True)
        return len(stale)

    def handle_return_lease(self, payload: list, call: Call) -> None:
        lease_id, kill_worker = decode(raylet.ReturnLease, payload)
        self._return(lease_id, bool(kill_worker))

    def _return(self, lease_id: str, kill_worker: bool) -> None:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.holder is not None:
            self._leases_by_holder.get(lease.holder, set()).discard(lease_id)
        self._release(lease)
        worker = lease.worker
        worker.lease_id = None
        if worker.state == LEASED:
            if kill_worker or lease.dedicated:
                worker.state = DEAD
                self.pool.kill(worker)
            else:
                worker.state = IDLE
                worker.idle_since = time.monotonic()
                # Warm caches: reuse the most recent first.
                self._idle.setdefault(worker.extra["pool"], deque()).appendleft(worker)
        self._dispatch()

    def _pool_of(self, lease: Lease) -> NodeResources | None:
        """What the lease takes from: the node, or its bundle (None once that is gone)."""
        if lease.bundle is None:
            return self.resources
        bundle = self.bundles.bundles.get(lease.bundle)
        return bundle.pool if bundle is not None else None

    def _release(self, lease: Lease) -> None:
        pool = self._pool_of(lease)
        if pool is None:
            return
        pool.give_gpus(lease.gpu_ids, lease.resources.get("GPU", 0.0))
        if lease.blocked:
            pool.release({k: v for k, v in lease.resources.items() if k != "CPU"})
        else:
            pool.release(lease.resources)

    def handle_worker_blocked(self, payload: list, call: Call | None) -> None:
        lease = self._lease_of_worker(decode(raylet.WorkerBlocked, payload).worker_id)
        pool = self._pool_of(lease) if lease is not None else None
        if lease is not None and pool is not None and not lease.blocked:
            lease.blocked = True
            pool.release({"CPU": lease.resources.get("CPU", 0.0)})
            self._dispatch()

    def handle_worker_unblocked(self, payload: list, call: Call | None) -> None:
        lease = self._lease_of_worker(decode(raylet.WorkerUnblocked, payload).worker_id)
        pool = self._pool_of(lease) if lease is not None else None
        if lease is not None and pool is not None and lease.blocked:
            lease.blocked = False
            # May oversubscribe the node for a moment, as in Ray: the task is already running.
            pool.acquire({"CPU": lease.resources.get("CPU", 0.0)})

    def handle_assigned_resources(self, payload: list, call: Call) -> dict:
        lease = self._lease_of_worker(decode(raylet.AssignedResources, payload).worker_id)
        return dict(lease.resources) if lease is not None else {}

    def _lease_of_worker(self, worker_id: str) -> Lease | None:
        worker = self.pool.workers.get(worker_id)
        if worker is None or worker.lease_id is None:
            return None
        return self.leases.get(worker.lease_id)

    def _dispatch(self) -> None:
        """Grant every queued request that fits now; start workers for the ones that lack one."""
        if self._closing:
            return
        waiting_for_worker: dict[Pool, int] = {}
        waiting_actors: dict[Pool, int] = {}  # of those, requests for an actor's own worker
        # Resources the requests that wait for a worker will take once one registers: later
        # requests must not count them as free, or a burst would start a worker per request.
        promised = self.resources.snapshot()
        in_bundles: dict[Key, NodeResources] = {}  # the same, per bundle
        for request in list(self.queue):
            if request.future.done():
                self.queue.remove(request)
                continue
            room = self._pool_for(request, promised, in_bundles)
            request.short_of_resources = room is None
            if room is None:
                continue
            worker = self._pop_idle(request.pool)
            if worker is not None:
                self.queue.remove(request)
                self._grant(request, worker)
            else:
                waiting_for_worker[request.pool] = waiting_for_worker.get(request.pool, 0) + 1
                if request.dedicated:
                    waiting_actors[request.pool] = waiting_actors.get(request.pool, 0) + 1
            room.acquire(request.resources)
            room.take_gpus(request.resources.get("GPU", 0.0))
        # The cap bounds task workers only: every actor gets a worker of its own, as in Ray
        # (an actor that waited for the cap would never start while the others live).
        task_workers = sum(
            1
            for w in self.pool.workers.values()
            if w.state in (STARTING, IDLE, LEASED) and not w.extra.get("dedicated")
        )
        for pool, waiting in waiting_for_worker.items():
            if not self.envs.ready(pool):
                continue  # its env is being set up here: _env_setup_done dispatches again
            starting = sum(
                1
                for w in self.pool.workers.values()
                if w.state == STARTING and w.extra.get("pool") == pool
            )
            for_actors = waiting_actors.get(pool, 0)
            while starting < waiting:
                if for_actors == 0 and task_workers >= self.config.max_workers_per_node:
                    if not self._evict_idle(pool):
                        break
                    task_workers -= 1
                self._spawn(pool)
                starting += 1
                if for_actors > 0:
                    for_actors -= 1
                else:
                    task_workers += 1

    def _evict_idle(self, needed_by: Pool) -> bool:
        """At the worker limit: end an idle worker of another pool (another job or runtime_env)
        to make room, the longest idle first; False if there is none."""
        candidates = [
            w
            for pool, idle in self._idle.items()
            if pool != needed_by
            for w in idle
            if w.state == IDLE and not w.extra.get("keep")
        ]
        if not candidates:
            return False
        worker = min(candidates, key=lambda w: w.idle_since)
        self._idle[worker.extra["pool"]].remove(worker)
        worker.state = DEAD
        self.pool.kill(worker)
        return True

    def _pop_idle(self, pool: Pool) -> WorkerProcess | None:
        idle = self._idle.get(pool)
        while idle:
            worker = idle.popleft()
            if worker.state == IDLE:
                return worker
        return None

    def _pool_for(
        self, request: LeaseRequest, promised: NodeResources, in_bundles: dict[Key, NodeResources]
    ) -> NodeResources | None:
        """Where a queued request fits now, in dispatch's running tally (None: nowhere); a
        request for a bundle notes which one in request.chosen."""
        if request.bundle is None:
            return promised if promised.fits(request.resources) else None
        for bundle in self.bundles.candidates(*request.bundle, request.resources):
            pool = in_bundles.setdefault(bundle.key, bundle.pool.snapshot())
            if pool.fits(request.resources):
                request.chosen = bundle.key
                return pool
        return None

    def _grant(self, request: LeaseRequest, worker: WorkerProcess) -> None:
        pool = self.resources
        if request.chosen is not None:
            pool = self.bundles.bundles[request.chosen].pool
        gpu_ids = pool.take_gpus(request.resources.get("GPU", 0.0))
        lease = Lease(ids.new_id(8).hex(), worker, request.resources, request.dedicated, gpu_ids)
        lease.bundle = request.chosen
        pool.acquire(request.resources)
        worker.state = LEASED
        worker.lease_id = lease.lease_id
        if request.dedicated:
            worker.extra["dedicated"] = True
        self.leases[lease.lease_id] = lease
        request.future.set_result(lease)

    # -- placement-group bundles ----------------------------------------------------------------

    async def _bundle_node(
        self, pg_id: str, index: int, resources: dict[str, float], spilled: bool
    ) -> tuple[str, str] | None:
        """Where a lease into a group's bundle goes: None for here, else (node id, raylet
        address); here if a bundle here has room (or it was sent here). Waits while the group
        is being placed; TaskUnschedulableError once it is removed."""
        local = self.bundles.candidates(pg_id, index, resources)
        if local and (spilled or index >= 0 or any(b.pool.fits(resources) for b in local)):
            return None
        state, nodes, bundles = await self._ask_gcs(placement_groups.LocateBundles(pg_id))
        if state == placement_groups.REMOVED:
            raise errors.TaskUnschedulableError(
                f"placement group {pg_id} was removed: nothing more runs in it"
            )
        self._bundle_turn += 1
        where = bundle_node(nodes, bundles, index, resources, self._bundle_turn)
        if where[0] != self.node_id:
            return where
        if not self.bundles.candidates(pg_id, index, resources):  # as of now, not before
            raise errors.TaskUnschedulableError(f"placement group {pg_id}: its bundle here is gone")
        return None

    def handle_prepare_bundles(self, payload: list, call: Call) -> bool:
        pg_id, bundles = decode(raylet.PrepareBundles, payload)
        return self.bundles.prepare(pg_id, [(i, r) for i, r in bundles])

    def handle_commit_bundles(self, payload: list, call: Call) -> None:
        pg_id, indexes = decode(raylet.CommitBundles, payload)
        self.bundles.commit(pg_id, indexes)
        self._dispatch()

    def handle_cancel_bundles(self, payload: list, call: Call | None) -> int:
        pg_id, indexes, reason = decode(raylet.CancelBundles, payload)
        return self._release_bundles(self.bundles.release(pg_id, indexes), reason)

    def handle_reclaim_bundles(self, payload: list, call: Call) -> int:
        known = {(str(p), int(i)) for p, i in decode(raylet.ReclaimBundles, payload).known}
        return self._release_bundles(self.bundles.keep_only(known), "unknown to the GCS")

    def _release_bundles(self, released: list, reason: str) -> int:
        """Bundles were given back to the node: the workers leased in them end, and requests
        waiting for a group with no bundle left here fail."""
        keys = {b.key for b in released}
        for lease in [lease for lease in self.leases.values() if lease.bundle in keys]:
            self._return(lease.lease_id, kill_worker=True)
        for request in list(self.queue):
            group = request.bundle[0] if request.bundle is not None else None
            if group is not None and not self.bundles.has_group(group):
                self.queue.remove(request)
                error = errors.TaskUnschedulableError(f"placement group {group} gone: {reason}")
                if not request.future.done():
                    request.future.set_exception(error)
        self._dispatch()
        return len(released)

    # -- inspection -----------------------------------------------------------------------------

    def handle_node_info(self, payload: Any, call: Call) -> dict:
        return {
            "node_id": self.node_id,
            "address": self.runtime.address,
            "resources_total": self.resources.total,
            "resources_available": self.resources.available,
            "workers": [
                {
                    "worker_id": w.worker_id,
                    "pid": w.pid,
                    "state": w.state,
                    "address": w.address,
                    "job_id": w.extra.get("job_id", ""),
                    "runtime_env_key": w.extra.get("pool", ("", ""))[1],
                    "dedicated": bool(w.extra.get("dedicated")),
                }
                for w in self.pool.workers.values()
            ],
            "bundles": self.bundles.rows(),
            "queued_lease_requests": len(self.queue),
            "leases": len(self.leases),
            "peers": sorted(self.peers),
        }
