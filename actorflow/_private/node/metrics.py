"""A node's /metrics: the actor ``metrics`` on the node's runtime and its Prometheus collector.

What is in it, read at scrape time from the state the node already keeps (nothing is updated
on the per-task path for it):
- from the raylet: resources used/available, worker processes by state, kind and job, leases
  and queued lease requests;
- from the object store: bytes in shared memory, pooled, spilled, its capacity, objects;
- from the processes of this node (workers, and a driver whose node this is), in their
  reports (ReportMetrics, about once a second, only when something changed; see
  worker/metrics.py): their calls by state (``actorflow_tasks``), their sampled request
  latencies, and the user's own metrics (actorflow.util.metrics).

Why reports rather than asking each worker at scrape time: a scrape then costs no message per
worker, a worker that exited still counts in the totals (its counters were sent), and a worker
busy in a long task cannot make the scrape wait. A process's current calls by state go when
its connection closes (it exited); what it counted as finished or failed stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from actorflow._private.metrics.aggregate import Aggregate
from actorflow._private.metrics.recorder import recorder_of
from actorflow._private.metrics.server import MetricsServer
from actorflow._private.protocol import metrics
from actorflow._private.protocol.message import decode
from actorflow._private.runtime import Call, Runtime

logger = logging.getLogger("actorflow.metrics")

FINISHED, FAILED = "FINISHED", "FAILED"


class NodeMetrics:
    """The node's totals of its processes' reports, and the registry its endpoint serves."""

    def __init__(self, runtime: Runtime, node_id: str) -> None:
        self.runtime = runtime
        self.node_id = node_id
        self.recorder = recorder_of(runtime)  # this process's own (its request latencies)
        self.aggregate = Aggregate()
        self.current: dict[str, dict[tuple[str, str], float]] = {}  # source -> its calls now
        self.done: dict[tuple[str, str], float] = {}  # (name, state) -> calls ended
        self._watched: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=False)
        self.server = MetricsServer(self.registry)
        # What the collectors read; set by the node once its parts exist.
        self.raylet: Any = None
        self.store: Any = None
        self.info: Callable[[], dict[str, Any]] = dict
        self.registry.register(_Collector(self))

    def add_collector(self, collector: Any) -> None:
        """Another part hosted on this runtime (the GCS of an embedded cluster)."""
        self.registry.register(collector)

    # -- reports ------------------------------------------------------------------------------

    def handle_report(self, payload: list, call: Call | None) -> None:
        source, report, tasks, done = decode(metrics.ReportMetrics, payload)
        if report is not None:
            self.aggregate.apply(report)
        if tasks is not None:
            self.current[source] = {(str(n), str(s)): float(c) for n, s, c in tasks}
            if call is not None and source not in self._watched:
                self._watched.add(source)
                call.on_caller_lost(lambda: self._gone(source))
        for name, state, count in done or ():
            key = (str(name), str(state))
            self.done[key] = self.done.get(key, 0.0) + float(count)

    def _gone(self, source: str) -> None:
        self._watched.discard(source)
        self.current.pop(source, None)

    def tasks_by_state(self) -> dict[tuple[str, str], float]:
        totals = dict(self.done)
        for calls in self.current.values():
            for key, count in calls.items():
                totals[key] = totals.get(key, 0.0) + count
        return totals

    def collect_own(self) -> None:
        """This process's own recorder's deltas (its sampled requests, and in an embedded
        cluster what the driver recorded between its reports)."""
        for name, family in list(self.recorder.families.items()):
            self.aggregate.families.setdefault(name, family)  # shown before any sample
        report = self.recorder.take()
        if report is not None:
            self.aggregate.apply(report)

    def handle_scrape(self, payload: Any, call: Call) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


class _Collector:
    def __init__(self, node: NodeMetrics) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        node.collect_own()
        if node.node_id:  # not in the GCS's own process, which is no node
            yield from self._node_info()
            yield from self._tasks()
        if node.raylet is not None:
            yield from self._raylet(node.raylet)
        if node.store is not None:
            yield from self._store(node.store.state.stats())
        yield from node.aggregate.collect()

    def _node_info(self) -> Iterator[Metric]:
        info = self.node.info()
        metric = GaugeMetricFamily(
            "actorflow_node_info",
            "1 for this node; its id, address and whether it is the head as labels",
            labels=["NodeId", "Address", "IsHead"],
        )
        metric.add_metric(
            [self.node.node_id, str(info.get("address", "")), str(bool(info.get("is_head")))], 1
        )
        yield metric

    def _tasks(self) -> Iterator[Metric]:
        metric = GaugeMetricFamily(
            "actorflow_tasks",
            "Tasks and actor calls by state, as counted by the processes of this node: their "
            "owners' calls not finished (PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, "
            "SUBMITTED_TO_WORKER), the calls running here (RUNNING, each also -1 "
            "SUBMITTED_TO_WORKER: sum over nodes), and calls ended (FINISHED, FAILED)",
            labels=["Name", "State"],
        )
        for (name, state), count in sorted(self.node.tasks_by_state().items()):
            metric.add_metric([name, state], count)
        yield metric

    def _raylet(self, raylet: Any) -> Iterator[Metric]:
        resources = GaugeMetricFamily(
            "actorflow_resources",
            "Logical resources of this node, USED or AVAILABLE",
            labels=["Name", "State"],
        )
        total, available = raylet.resources.total, raylet.resources.available
        for name in sorted(total):
            free = available.get(name, 0.0)
            resources.add_metric([name, "USED"], total[name] - free)
            resources.add_metric([name, "AVAILABLE"], free)
        yield resources
        totals = GaugeMetricFamily(
            "actorflow_resources_total", "Logical resources this node offers", labels=["Name"]
        )
        for name in sorted(total):
            totals.add_metric([name], total[name])
        yield totals
        workers = GaugeMetricFamily(
            "actorflow_workers",
            "Worker processes of this node by state (STARTING, IDLE, BUSY: leased), kind "
            "(task, actor: a worker of its own) and job",
            labels=["State", "Kind", "JobId"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for worker in raylet.pool.workers.values():
            state = {"starting": "STARTING", "idle": "IDLE", "leased": "BUSY"}.get(worker.state)
            if state is None:
                continue
            kind = "actor" if worker.extra.get("dedicated") else "task"
            key = (state, kind, str(worker.extra.get("job_id", "")))
            counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            workers.add_metric(list(key), count)
        yield workers
        leases = GaugeMetricFamily(
            "actorflow_leases",
            "Workers leased by this node: to run tasks (task) or to host an actor (actor)",
            labels=["Kind"],
        )
        dedicated = sum(1 for lease in raylet.leases.values() if lease.dedicated)
        leases.add_metric(["task"], len(raylet.leases) - dedicated)
        leases.add_metric(["actor"], dedicated)
        yield leases
        yield GaugeMetricFamily(
            "actorflow_lease_requests_queued",
            "Lease requests waiting at this node for a worker or resources",
            value=len(raylet.queue),
        )

    def _store(self, stats: dict[str, Any]) -> Iterator[Metric]:
        memory = GaugeMetricFamily(
            "actorflow_object_store_memory",
            "Object store bytes by location: MMAP_SHM (objects in shared memory), SPILLED "
            "(on disk)",
            labels=["Location"],
        )
        memory.add_metric(["MMAP_SHM"], stats["in_use"])
        memory.add_metric(["SPILLED"], stats["spilled_bytes"])
        yield memory
        for name, key, text in (
            ("actorflow_object_store_pooled_bytes", "pooled", "Freed shared memory kept for reuse"),
            ("actorflow_object_store_used_bytes", "used", "Shared memory in use or pooled"),
            ("actorflow_object_store_capacity_bytes", "capacity", "The store's capacity"),
            ("actorflow_object_store_num_local_objects", "objects", "Objects in the store"),
        ):
            yield GaugeMetricFamily(name, text, value=stats[key])
        yield GaugeMetricFamily(
            "actorflow_object_store_available_memory",
            "Bytes the store can still allocate before it spills",
            value=max(0, stats["capacity"] - stats["used"]),
        )
