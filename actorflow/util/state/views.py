"""What a running cluster holds, in actorflow's own rows (plain dicts): its nodes, actors,
workers, task leases and objects, its status at a glance, and the tables of ``actorflow status``,
``actorflow list`` and ``actorflow memory``. (Ray's ``ray.util.state`` functions, with Ray's rows,
are in ``api.py``.)

Every function takes ``address``: None uses this process's cluster when ``actorflow.init()`` was
called (or the code runs in a worker), else the latest session on this machine, like "auto".
"HOST:PORT" (or "tcp://HOST:PORT") is a cluster's GCS address; the cluster token then comes from
``ACTORFLOW_TOKEN``, else the session directory on this machine of that cluster (its head's, or a
node's that joined it), else the latest session directory. The session directories are found under
``ACTORFLOW_SESSION_ROOT`` (default /tmp/actorflow-sessions).

Processes that exited while being asked are skipped. No reachable cluster raises
``ClusterNotFoundError`` (a ``ConnectionError``); a wrong token raises
``actorflow.exceptions.AuthenticationError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from actorflow._private.cluster import inspection
from actorflow.exceptions import ClusterNotFoundError

__all__ = [
    "ClusterNotFoundError",
    "actor_rows",
    "cluster_demand",
    "cluster_status",
    "placement_group_rows",
    "memory_summary",
    "node_rows",
    "object_rows",
    "object_store_stats",
    "task_lease_rows",
    "worker_rows",
]

ACTOR_STATES = ("ALIVE", "PENDING", "RESTARTING", "DEAD")


# -- nodes, actors, workers, tasks ---------------------------------------------------------------


def cluster_demand(address: str | None = None) -> dict[str, Any]:
    """The cluster's pending demand, as the GCS sums it from the nodes' heartbeats (what an
    autoscaler reads, ``actorflow.autoscaler``).

    Keys: pending (rows {"shape", "count", "kind"}: the resource shapes of the lease requests
    queued on the nodes for lack of resources, kind "task" or "actor"; not those only waiting
    for a worker process to start), pending_actors (actors not placed yet, the same rows),
    infeasible (requests no node could ever fit, seen in the last minute: they failed with
    TaskUnschedulableError), nodes (per live node: node_id, address, is_head, pid, host,
    resources, available, draining (why, or ""), idle and idle_seconds (no lease, queued
    request, actor, kept worker or primary object copy, for that long), busy (those counts),
    hosts_actors).
    """
    return dict(inspection.run(address, inspection.collect_cluster).demand)


def node_rows(address: str | None = None) -> list[dict[str, Any]]:
    """One row per node the GCS knows, dead ones too, the head first.

    Keys: node_id, address, host, pid, is_head, state ("ALIVE" or "DEAD"), alive, death_cause
    ("" while alive), resources_total, resources_available (as the node last reported in its
    heartbeat), resources_used (total minus available), object_store_memory (bytes), and from
    the node's raylet (None if it did not answer, or the node is dead): workers (worker
    processes), leases (workers leased: running tasks or hosting actors), queued_lease_requests
    (requests waiting for a worker or resources), metrics_address (HOST:PORT of the node's
    Prometheus endpoint, /metrics; "" if it serves none), draining (why the node drains, "" if
    it does not: no new work goes there).
    """
    return nodes_of(inspection.run(address, inspection.collect_cluster))


def actor_rows(address: str | None = None) -> list[dict[str, Any]]:
    """One row per actor the GCS knows, dead ones too.

    Keys: actor_id, class_name, name ("" if unnamed), namespace, state ("PENDING", "ALIVE",
    "RESTARTING" or "DEAD"), address (its worker's), node_id and pid (of its worker, "" and None
    if not running on a live node), restarts, death_cause.
    """
    return actors_of(inspection.run(address, inspection.collect_cluster))


def placement_group_rows(address: str | None = None) -> list[dict[str, Any]]:
    """One row per placement group the GCS knows, removed ones too (as ``ray list
    placement-groups``): Ray's placement_group_table rows (placement_group_id, name, bundles,
    bundles_to_node_id, strategy, state, stats) with namespace, job_id and lifetime."""
    return list(inspection.run(address, collect_placement_groups).values())


async def collect_placement_groups(ask: inspection.Ask, gcs_address: str) -> Any:
    return await ask(gcs_address, "placement_groups", "placement_group_table", [""])


def worker_rows(address: str | None = None) -> list[dict[str, Any]]:
    """One row per worker process on the live nodes.

    Keys: node_id, worker_id, pid, address, state ("starting", "idle" or "leased"), job_id
    (the job the worker was started for; None if the node does not report it), actor_id (the
    actor it hosts, "" if none).
    """
    return workers_of(inspection.run(address, inspection.collect_cluster))


def task_lease_rows(address: str | None = None) -> list[dict[str, Any]]:
    """One row per worker leased to run tasks (not hosting an actor): a lease runs the tasks of
    one owner, one or several in turn (single tasks: ``list_tasks``, from task events); queued
    lease requests are counted per node in ``node_rows()`` and ``cluster_status()``.

    Keys: node_id, worker_id, pid, address, job_id (None if the node does not report it).
    """
    return tasks_of(workers_of(inspection.run(address, inspection.collect_cluster)))


def cluster_status(address: str | None = None) -> dict[str, Any]:
    """The cluster at a glance (``ray status``): gcs_address; nodes (as ``node_rows()``);
    resources: total, used and available, summed over the live nodes; actors: how many in each
    state; tasks: task_leases (workers leased to run tasks), actor_workers (workers hosting
    actors), queued_lease_requests (tasks waiting for a worker or resources), workers (worker
    processes); jobs: alive and finished drivers; unreachable: live nodes that did not answer.
    """
    return status_of(inspection.run(address, inspection.collect_cluster))


def _round(value: float) -> float:
    return round(float(value), 4) + 0.0  # no -0.0


def nodes_of(view: inspection.ClusterView) -> list[dict[str, Any]]:
    rows = []
    for node in view.nodes:
        total = {k: _round(v) for k, v in (node.get("resources") or {}).items()}
        alive = bool(node.get("alive", True))
        available = {k: _round(v) for k, v in (node.get("available") or total).items()}
        info = view.node_infos.get(node["node_id"]) if alive else None
        rows.append(
            {
                "node_id": node["node_id"],
                "address": node.get("address", ""),
                "host": node.get("host", ""),
                "pid": node.get("pid"),
                "is_head": bool(node.get("is_head")),
                "state": "ALIVE" if alive else "DEAD",
                "alive": alive,
                "death_cause": node.get("death_cause", "") or "",
                "resources_total": total,
                "resources_available": available,
                "resources_used": {k: _round(v - available.get(k, v)) for k, v in total.items()},
                "object_store_memory": node.get("object_store_memory", 0),
                "metrics_address": node.get("metrics_address", "") or "",
                "workers": len(info.get("workers", [])) if info else None,
                "leases": info.get("leases") if info else None,
                "queued_lease_requests": info.get("queued_lease_requests") if info else None,
                "draining": node.get("draining", "") or "",
            }
        )
    return sorted(rows, key=lambda r: (not r["alive"], not r["is_head"], r["node_id"]))


def _workers_by_address(view: inspection.ClusterView) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        w["address"]: (node_id, w)
        for node_id, info in view.node_infos.items()
        for w in info.get("workers", [])
        if w.get("address")
    }


def actors_of(view: inspection.ClusterView) -> list[dict[str, Any]]:
    workers = _workers_by_address(view)
    rows = []
    for actor in view.actors:
        node_id, worker = workers.get(actor.get("address") or "", ("", {}))
        running = actor["state"] != "DEAD" and bool(worker)
        rows.append(
            {
                "actor_id": actor["actor_id"],
                "class_name": actor.get("class_name", ""),
                "name": actor.get("name", ""),
                "namespace": actor.get("namespace", ""),
                "state": actor["state"],
                "address": actor.get("address", ""),
                "node_id": node_id if running else actor.get("node_id", "") or "",
                "pid": worker.get("pid") if running else None,
                "restarts": actor.get("restarts", 0),
                "death_cause": actor.get("death_cause", "") or "",
            }
        )
    order = {state: i for i, state in enumerate(ACTOR_STATES)}
    return sorted(
        rows, key=lambda r: (order.get(r["state"], len(order)), r["class_name"], r["actor_id"])
    )


def workers_of(view: inspection.ClusterView) -> list[dict[str, Any]]:
    hosts = {
        a["address"]: a["actor_id"]
        for a in view.actors
        if a.get("address") and a["state"] != "DEAD"
    }
    rows = []
    for node_id, info in view.node_infos.items():
        for worker in info.get("workers", []):
            if worker.get("state") == "dead":
                continue
            rows.append(
                {
                    "node_id": node_id,
                    "worker_id": worker.get("worker_id", ""),
                    "pid": worker.get("pid"),
                    "address": worker.get("address", ""),
                    "state": worker.get("state", ""),
                    "job_id": worker.get("job_id"),
                    "actor_id": hosts.get(worker.get("address") or "", ""),
                }
            )
    return sorted(rows, key=lambda r: (r["node_id"], r["state"], r["worker_id"]))


def tasks_of(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: w[k] for k in ("node_id", "worker_id", "pid", "address", "job_id")}
        for w in workers
        if w["state"] == "leased" and not w["actor_id"]
    ]


def status_of(view: inspection.ClusterView) -> dict[str, Any]:
    nodes = nodes_of(view)
    live = [n for n in nodes if n["alive"]]
    total: dict[str, float] = {}
    used: dict[str, float] = {}
    for node in live:
        for key, value in node["resources_total"].items():
            total[key] = _round(total.get(key, 0.0) + value)
            used[key] = _round(used.get(key, 0.0) + node["resources_used"].get(key, 0.0))
    actors = {state: 0 for state in ACTOR_STATES}
    for actor in view.actors:
        actors[actor["state"]] = actors.get(actor["state"], 0) + 1
    workers = workers_of(view)
    return {
        "gcs_address": view.gcs_address,
        "nodes": nodes,
        "resources": {
            "total": total,
            "used": used,
            "available": {k: _round(v - used[k]) for k, v in total.items()},
        },
        "actors": actors,
        "tasks": {
            "task_leases": len(tasks_of(workers)),
            "actor_workers": sum(1 for w in workers if w["actor_id"]),
            "queued_lease_requests": sum(n["queued_lease_requests"] or 0 for n in live),
            "workers": len(workers),
        },
        "jobs": {
            "alive": sum(1 for j in view.jobs if j.get("alive")),
            "finished": sum(1 for j in view.jobs if not j.get("alive")),
        },
        "unreachable": list(view.unreachable),
        "demand": {
            key: list(view.demand.get(key) or [])
            for key in ("pending", "pending_actors", "infeasible")
        },
    }


# -- objects --------------------------------------------------------------------------------------


def object_rows(address: str | None = None) -> list[dict[str, Any]]:
    """One row per object known anywhere in the cluster, largest first.

    Keys: object_id (hex), size (bytes), owner (address), owner_pid (None if the owner did not
    answer), where ("memory": inline with its owner, "shared": in a node's shared-memory store,
    "spilled": in the store's spill files, "pending": not computed yet), local_refs (refs in the
    owner's process), borrowers (how many other processes hold refs) and borrower_addresses,
    pinned_by_tasks (pending tasks that take it as an argument), readers (processes that have it
    mapped), contained_refs (refs and handles stored inside it), error (it holds an exception).
    """
    snapshot = inspection.run(address, inspection.collect)
    return _sorted(inspection.merge_objects(snapshot))


def object_store_stats(address: str | None = None) -> dict[str, Any]:
    """The object store's figures in bytes and counts, summed over the nodes: capacity, used
    (segments in use or pooled), in_use, pooled, pinned, objects, spilled_objects, spilled_bytes,
    spill_count, nodes."""

    async def stats(ask: inspection.Ask, gcs_address: str) -> dict[str, Any]:
        return inspection.total_stats((await inspection.collect(ask, gcs_address)).store_stats)

    return inspection.run(address, stats)


def memory_summary(address: str | None = None) -> str:
    """A table of the cluster's objects, one line each, and a line of totals."""
    snapshot = inspection.run(address, inspection.collect)
    return format_summary(
        _sorted(inspection.merge_objects(snapshot)),
        inspection.total_stats(snapshot.store_stats),
        snapshot.unreachable,
    )


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["size"], r["object_id"]))


# -- formatting ---------------------------------------------------------------------------------

_COLUMNS = [
    ("OBJECT ID", "object_id"),
    ("SIZE", "size"),
    ("WHERE", "where"),
    ("OWNER PID", "owner_pid"),
    ("LOCAL REFS", "local_refs"),
    ("BORROWERS", "borrowers"),
    ("PINNED", "pinned_by_tasks"),
    ("READERS", "readers"),
    ("CONTAINS", "contained_refs"),
    ("OWNER", "owner"),
]


def format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _cell(key: str, row: dict[str, Any]) -> str:
    value = row[key]
    if key == "size":
        return format_bytes(value)
    if key == "where" and row.get("error"):
        return f"{value} (error)"
    return "?" if value is None else str(value)


def format_summary(
    rows: list[dict[str, Any]], stats: dict[str, Any], unreachable: Sequence[str] = ()
) -> str:
    table = [[title for title, _ in _COLUMNS]]
    table += [[_cell(key, row) for _, key in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]

    def total(where: str) -> int:
        return sum(r["size"] for r in rows if r["where"] == where)

    lines.append(
        f"{len(rows)} objects: {format_bytes(total('memory'))} inline, "
        f"{format_bytes(total('shared'))} in shared memory, "
        f"{format_bytes(total('spilled'))} spilled; object store: "
        f"{format_bytes(stats['used'])} used of {format_bytes(stats['capacity'])} "
        f"({stats['objects']} objects, {stats['spilled_objects']} spilled)"
    )
    if unreachable:
        lines.append(f"{len(unreachable)} processes did not answer: {', '.join(unreachable)}")
    return "\n".join(lines)


# -- tables of nodes, actors, workers, tasks; the status ----------------------------------------

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _short(address: str) -> str:
    return address.split("://")[-1]


def _amounts(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {_number(v)}" for k, v in sorted(values.items())) or "-"


def _number(value: float) -> str:
    return f"{value:g}"


def _usage(row: dict[str, Any]) -> str:
    used, total = row["resources_used"], row["resources_total"]
    return (
        ", ".join(f"{k} {_number(used.get(k, 0.0))}/{_number(v)}" for k, v in sorted(total.items()))
        or "-"
    )


def _node_state(row: dict[str, Any]) -> str:
    if row.get("draining") and row["alive"]:
        return f"DRAINING ({row['draining']})"
    return row["state"] + (f" ({row['death_cause']})" if row["death_cause"] else "")


NODE_COLUMNS: list[Column] = [
    ("NODE ID", lambda r: r["node_id"]),
    ("ADDRESS", lambda r: _short(r["address"])),
    ("HEAD", lambda r: "yes" if r["is_head"] else ""),
    ("PID", lambda r: r["pid"]),
    ("RESOURCES USED/TOTAL", _usage),
    ("WORKERS", lambda r: r["workers"]),
    ("LEASES", lambda r: r["leases"]),
    ("QUEUED", lambda r: r["queued_lease_requests"]),
    ("METRICS", lambda r: r.get("metrics_address") or ""),
    ("STATE", _node_state),
]
ACTOR_COLUMNS: list[Column] = [
    ("ACTOR ID", lambda r: r["actor_id"]),
    ("CLASS", lambda r: r["class_name"]),
    ("NAME", lambda r: r["name"]),
    ("NAMESPACE", lambda r: r["namespace"]),
    ("STATE", lambda r: r["state"]),
    ("NODE ID", lambda r: r["node_id"]),
    ("PID", lambda r: r["pid"]),
    ("RESTARTS", lambda r: r["restarts"]),
    ("DEATH CAUSE", lambda r: r["death_cause"]),
]
WORKER_COLUMNS: list[Column] = [
    ("WORKER ID", lambda r: r["worker_id"]),
    ("NODE ID", lambda r: r["node_id"]),
    ("PID", lambda r: r["pid"]),
    ("STATE", lambda r: r["state"]),
    ("JOB ID", lambda r: r["job_id"]),
    ("ACTOR ID", lambda r: r["actor_id"]),
    ("ADDRESS", lambda r: _short(r["address"])),
]
TASK_COLUMNS: list[Column] = [
    ("WORKER ID", lambda r: r["worker_id"]),
    ("NODE ID", lambda r: r["node_id"]),
    ("PID", lambda r: r["pid"]),
    ("JOB ID", lambda r: r["job_id"]),
    ("ADDRESS", lambda r: _short(r["address"])),
]


def format_table(rows: list[dict[str, Any]], columns: list[Column]) -> str:
    """Rows as a table with a header line; None shows as "?", "" as "-"."""

    def cell(value: Any) -> str:
        return "?" if value is None else "-" if value == "" else str(value)

    table = [[title for title, _ in columns]]
    table += [[cell(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    )


def _shapes(rows: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{row['count']} x {{{', '.join(f'{k}: {_number(v)}' for k, v in row['shape'].items())}}}"
        + (f" ({row['kind']})" if row.get("kind") == "actor" else "")
        for row in rows
    )


def format_demand(demand: dict[str, Any]) -> list[str]:
    """The status lines of the pending demand (``cluster_demand``)."""
    pending, infeasible = demand.get("pending") or [], demand.get("infeasible") or []
    lines = ["", "Demand:"]
    lines.append(
        f"  pending (waiting for resources): {_shapes(pending)}" if pending else "  none pending"
    )
    if infeasible:
        lines.append(f"  infeasible (no node could fit them, last minute): {_shapes(infeasible)}")
    return lines


def format_status(status: dict[str, Any]) -> str:
    nodes = status["nodes"]
    live = [n for n in nodes if n["alive"]]
    resources = status["resources"]
    actors, tasks, jobs = status["actors"], status["tasks"], status["jobs"]
    lines = [
        f"Cluster at {_short(status['gcs_address'])}: {len(live)} node(s) alive, "
        f"{len(nodes) - len(live)} dead",
        "",
        "Nodes:",
    ]
    lines += [
        "  " + line
        for line in format_table(
            nodes, [c for c in NODE_COLUMNS if c[0] not in ("WORKERS", "LEASES", "QUEUED")]
        ).splitlines()
    ]
    lines += ["", "Resources (used/total over the live nodes):"]
    lines += [
        f"  {k}: {_number(resources['used'][k])}/{_number(v)}"
        for k, v in sorted(resources["total"].items())
    ] or ["  none"]
    lines += [
        "",
        "Actors: " + ", ".join(f"{n} {state}" for state, n in actors.items()),
        f"Tasks: {tasks['task_leases']} worker(s) leased to run tasks, "
        f"{tasks['queued_lease_requests']} lease request(s) queued (tasks waiting for a "
        f"worker or resources); {tasks['actor_workers']} worker(s) host actors; "
        f"{tasks['workers']} worker process(es) in all",
        f"Jobs: {jobs['alive']} driver(s) connected, {jobs['finished']} finished",
    ]
    lines += format_demand(status.get("demand") or {})
    if status["unreachable"]:
        lines.append(
            f"{len(status['unreachable'])} node(s) did not answer: "
            f"{', '.join(_short(a) for a in status['unreachable'])}"
        )
    return "\n".join(lines)
