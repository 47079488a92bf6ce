"""The GCS's part of /metrics, read from its tables at scrape time: actors by class and state,
nodes alive and dead, jobs, placement groups by state, and the writes to its storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actorflow._private.control.gcs import GCS
from actorflow._private.control.storage import CountingStorage


class GCSCollector:
    def __init__(self, gcs: GCS) -> None:
        self.gcs = gcs

    def collect(self) -> Iterator[Metric]:
        gcs = self.gcs
        actors = GaugeMetricFamily(
            "actorflow_actors",
            "Actors by class (Name) and state (PENDING, ALIVE, RESTARTING, DEAD)",
            labels=["Name", "State"],
        )
        counts: dict[tuple[str, str], int] = {}
        manager = gcs.actor_manager
        for record in list(manager.actors.values()) if manager is not None else []:
            key = (str(record.spec.get("class_name", "")), record.state)
            counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            actors.add_metric(list(key), count)
        yield actors
        alive = sum(1 for n in gcs.nodes.values() if n.get("alive"))
        yield GaugeMetricFamily(
            "actorflow_cluster_active_nodes", "Nodes alive in the cluster", value=alive
        )
        yield GaugeMetricFamily(
            "actorflow_cluster_failed_nodes",
            "Nodes the GCS has marked dead",
            value=len(gcs.nodes) - alive,
        )
        jobs = GaugeMetricFamily(
            "actorflow_jobs", "Jobs (drivers) by state: RUNNING or FINISHED", labels=["State"]
        )
        running = sum(1 for j in gcs.jobs.values() if j.get("alive"))
        jobs.add_metric(["RUNNING"], running)
        jobs.add_metric(["FINISHED"], len(gcs.jobs) - running)
        yield jobs
        groups = GaugeMetricFamily(
            "actorflow_placement_groups", "Placement groups by state", labels=["State"]
        )
        by_state: dict[str, int] = {}
        table: Any = gcs.placement_groups
        for record in list(table.groups.values()) if table is not None else []:
            by_state[record.state] = by_state.get(record.state, 0) + 1
        for state, count in sorted(by_state.items()):
            groups.add_metric([state], count)
        yield groups
        writes = CounterMetricFamily(
            "actorflow_gcs_storage_writes",
            "Writes of the GCS to its storage (SQLite, Redis; counted for memory too), by "
            "table and operation (put, delete)",
            labels=["Table", "Op"],
        )
        storage = gcs.storage
        if isinstance(storage, CountingStorage):
            for (name, op), count in sorted(storage.writes.items()):
                writes.add_metric([name, op], count)
        yield writes
        yield from self._demand()
        yield GaugeMetricFamily(
            "actorflow_gcs_storage_durable",
            "1 if the GCS keeps its tables in durable storage (SQLite or Redis), else 0",
            value=1 if gcs.storage.durable else 0,
        )

    def _demand(self) -> Iterator[Metric]:
        """The pending demand an autoscaler reads (control/gcs.py GCS.demand)."""
        demand = self.gcs.demand()
        requests = GaugeMetricFamily(
            "actorflow_pending_requests",
            "Lease requests waiting for resources (State=pending) and requests no node could "
            "fit in the last minute (State=infeasible), by Kind (task, actor)",
            labels=["State", "Kind"],
        )
        resources = GaugeMetricFamily(
            "actorflow_pending_resources",
            "Resources asked by the requests waiting for resources (State=pending) or that no "
            "node could fit (State=infeasible), by resource Name",
            labels=["State", "Name"],
        )
        for state in ("pending", "infeasible"):
            counts: dict[str, int] = {"task": 0, "actor": 0}
            amounts: dict[str, float] = {}
            for row in demand[state]:
                counts[row["kind"]] = counts.get(row["kind"], 0) + row["count"]
                for name, value in row["shape"].items():
                    amounts[name] = amounts.get(name, 0.0) + value * row["count"]
            for kind, count in sorted(counts.items()):
                requests.add_metric([state, kind], count)
            for name, amount in sorted(amounts.items()):
                resources.add_metric([state, name], amount)
        yield requests
        yield resources
        nodes = demand["nodes"]
        yield GaugeMetricFamily(
            "actorflow_idle_nodes",
            "Live nodes with nothing anyone needs (no lease, queued request, actor, kept "
            "worker or primary object copy)",
            value=sum(1 for n in nodes if n["idle"]),
        )
        yield GaugeMetricFamily(
            "actorflow_draining_nodes",
            "Live nodes that drain (no new work goes to them)",
            value=sum(1 for n in nodes if n["draining"]),
        )
