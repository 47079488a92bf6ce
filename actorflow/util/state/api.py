"""Ray's state API (``ray.util.state``): ``list_*``, ``get_*`` and ``summarize_*`` with Ray's
signatures and Ray's rows (``common.py``).

``address`` is as everywhere in ``actorflow.util.state``: None is this process's cluster (or the
latest on this machine). ``filters`` is a list of ``(key, "=" | "!=", value)``, ANDed; a key
that cannot be filtered on, or another predicate, is a ValueError before anything is asked.
``limit`` caps the rows returned; ``timeout`` bounds the whole query (``GetTimeoutError``);
``detail=False`` leaves the detail fields None, as Ray does. ``raise_on_missing_output``: a live
node whose raylet did not answer makes the query raise ``StateApiError`` (Ray's
``RayStateApiException``); with False it warns and lists what the others said. Processes that
exit while being asked are skipped.

``list_tasks`` lists one row per attempt: ended attempts come from the task events their owners
report to the GCS (``enable_task_events=False`` leaves a call out), unfinished ones from their
owners and workers. Where actorflow differs from Ray: ``list_workers`` lists worker processes
(not drivers); actors' constructors are not listed once they have run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from actorflow._private.cluster import inspection, task_history
from actorflow.exceptions import StateApiError
from actorflow.object_ref import ObjectRef
from actorflow.util.state import views
from actorflow.util.state.common import (
    DEFAULT_LIMIT,
    DEFAULT_RPC_TIMEOUT,
    ActorState,
    JobState,
    NodeState,
    ObjectState,
    PlacementGroupState,
    StateSchema,
    TaskState,
    WorkerState,
    apply_filters,
    check_filters,
    without_detail,
)

__all__ = [
    "get_actor",
    "get_job",
    "get_node",
    "get_objects",
    "get_placement_group",
    "get_task",
    "get_worker",
    "list_actors",
    "list_jobs",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_tasks",
    "list_workers",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]

S = TypeVar("S", bound=StateSchema)
Filters = Sequence[tuple[str, str, Any]] | None

ACTOR_STATES = {"PENDING": "PENDING_CREATION"}  # actorflow's name -> Ray's (others the same)


def _ip(address: str) -> str:
    """The host of a "tcp://HOST:PORT" address ("" for other schemes)."""
    rest = address.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0] if address.startswith("tcp://") else ""


def _ms(seconds: Any) -> int | None:
    return int(float(seconds) * 1000) if seconds else None


def _missing(unreachable: Sequence[str], raise_on_missing_output: bool) -> None:
    if not unreachable:
        return
    message = (
        f"{len(unreachable)} node(s) did not answer, so the result may be missing what they "
        f"hold: {', '.join(unreachable)}"
    )
    if raise_on_missing_output:
        raise StateApiError(message + " (pass raise_on_missing_output=False to list the rest)")
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _select(rows: list[S], filters: list, limit: int, detail: bool) -> list[S]:
    rows = apply_filters(rows, filters)[: max(0, int(limit))]
    return rows if detail else [without_detail(row) for row in rows]


def _check_limit(limit: Any) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an int >= 0, got {limit!r}")


def _lister(
    schema: type[S], build: Callable[[Any], tuple[list[S], list[str]]], collect: Any
) -> Callable[..., list[S]]:
    """A Ray-style ``list_*`` function: check the filters, ask the cluster once, build the
    rows from what it said (and the nodes that did not answer), filter, cap, strip detail."""

    def list_rows(
        address: str | None = None,
        filters: Filters = None,
        limit: int = DEFAULT_LIMIT,
        timeout: int = DEFAULT_RPC_TIMEOUT,
        detail: bool = False,
        raise_on_missing_output: bool = True,
        _explain: bool = False,
    ) -> list[S]:
        checked = check_filters(schema, filters)
        _check_limit(limit)
        rows, unreachable = build(inspection.run(address, collect, timeout))
        _missing(unreachable, raise_on_missing_output)
        return _select(rows, checked, limit, detail)

    return list_rows


# -- rows from what the cluster said -------------------------------------------------------------


def _actors(view: inspection.ClusterView) -> tuple[list[ActorState], list[str]]:
    raw = {a["actor_id"]: a for a in view.actors}
    rows = []
    for merged in views.actors_of(view):  # the CLI's order: by state, then class
        actor = raw[merged["actor_id"]]
        cause = actor.get("death_cause") or ""
        rows.append(
            ActorState(
                actor_id=actor["actor_id"],
                class_name=actor.get("class_name", ""),
                state=ACTOR_STATES.get(actor["state"], actor["state"]),
                job_id=actor.get("job_id", "") or "",
                name=actor.get("name", "") or "",
                node_id=merged["node_id"] or None,
                pid=merged["pid"],
                ray_namespace=actor.get("namespace", ""),
                required_resources=dict(actor.get("resources") or {}),
                death_cause={"actor_died_error_context": {"error_message": cause}}
                if cause
                else None,
                is_detached=actor.get("lifetime") == "detached",
                repr_name="",
                num_restarts=actor.get("restarts", 0),
                num_restarts_due_to_lineage_reconstruction=0,
            )
        )
    return rows, list(view.unreachable)


def _nodes(view: inspection.ClusterView) -> tuple[list[NodeState], list[str]]:
    raw = {n["node_id"]: n for n in view.nodes}
    rows = []
    for node in views.nodes_of(view):
        info = raw[node["node_id"]]
        ip = node["host"] or _ip(node["address"])
        rows.append(
            NodeState(
                node_id=node["node_id"],
                node_ip=ip,
                is_head_node=node["is_head"],
                state=node["state"],
                state_message=node["death_cause"] or None,
                node_name=ip,
                resources_total=node["resources_total"],
                labels={},
                start_time_ms=_ms(info.get("registered_at")),
                end_time_ms=_ms(info.get("died_at")),
            )
        )
    return rows, list(view.unreachable)


def _jobs(view: inspection.ClusterView) -> tuple[list[JobState], list[str]]:
    rows = []
    for job in view.jobs:
        alive = bool(job.get("alive", True))
        address = job.get("driver_address", "") or ""
        rows.append(
            JobState(
                job_id=job["job_id"],
                type="DRIVER",
                status="RUNNING" if alive else "SUCCEEDED",
                start_time=_ms(job.get("started_at")),
                end_time=None if alive else _ms(job.get("ended_at")),
                driver_info={"id": job["job_id"], "node_ip_address": _ip(address), "pid": None},
            )
        )
    return rows, []


def _workers(view: inspection.ClusterView) -> tuple[list[WorkerState], list[str]]:
    rows = [
        WorkerState(
            worker_id=w["worker_id"],
            is_alive=True,
            worker_type="WORKER",
            node_id=w["node_id"],
            ip=_ip(w["address"]),
            pid=w["pid"],
        )
        for w in views.workers_of(view)
    ]
    return rows, list(view.unreachable)


def _reference_type(row: dict[str, Any]) -> str:
    if row["pinned_by_tasks"]:
        return "USED_BY_PENDING_TASK"
    if row["local_refs"]:
        return "LOCAL_REFERENCE"
    if not row["owned"]:
        return "CAPTURED_IN_OBJECT"  # borrowed with no ref of its own: inside another value
    return "PINNED_IN_MEMORY"  # the owner keeps it for its borrowers


def _objects(snapshot: inspection.Snapshot) -> tuple[list[ObjectState], list[str]]:
    merged = {row["object_id"]: row for row in inspection.merge_objects(snapshot)}
    drivers = set(snapshot.drivers)
    rows = []
    for ref in snapshot.refs:
        obj = merged.get(ref["object_id"])
        if obj is None or not (ref["owned"] or ref["local_refs"] or ref["pinned_by_tasks"]):
            continue  # freed, or an entry of a borrower that let go
        status = "FAILED" if obj["error"] else "NIL" if obj["where"] == "pending" else "FINISHED"
        rows.append(
            ObjectState(
                object_id=ref["object_id"],
                object_size=obj["size"] if obj["where"] != "pending" else -1,
                task_status=status,
                attempt_number=0,
                reference_type=_reference_type(ref),
                call_site="disabled",
                type="DRIVER" if ref["process"] in drivers else "WORKER",
                pid=ref["pid"],
                ip=_ip(ref["process"]),
            )
        )
    return rows, []


def _tasks(snapshot: inspection.TaskSnapshot) -> tuple[list[TaskState], list[str]]:
    fields = TaskState.columns()
    rows = [
        TaskState(**{k: v for k, v in row.items() if k in fields})
        for row in task_history.attempt_rows(snapshot)
    ]
    dropped = sum(snapshot.dropped.values())
    if dropped:
        warnings.warn(
            f"{dropped} task event(s) were dropped (an owner's buffer was full, or the GCS's "
            f"table of a job: Config.task_events_buffer_size / task_events_max_per_job), so "
            f"the result may be incomplete",
            RuntimeWarning,
            stacklevel=4,
        )
    return rows, list(snapshot.view.unreachable)


def task_events_dropped(address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT) -> int:
    """How many task events the cluster lost (owners' full buffers, the GCS's evictions)."""
    snapshot = inspection.run(address, inspection.collect_tasks, timeout)
    return sum(snapshot.dropped.values())


def _placement_groups(table: dict[str, Any]) -> tuple[list[PlacementGroupState], list]:
    rows = []
    for group in table.values():
        nodes = group.get("bundles_to_node_id") or {}
        rows.append(
            PlacementGroupState(
                placement_group_id=group["placement_group_id"],
                name=group.get("name") or "",
                creator_job_id=group.get("job_id") or "",
                state=group["state"],
                bundles=[
                    {
                        "bundle_id": f"{group['placement_group_id']}_{i}",
                        "node_id": nodes.get(i),
                        "unit_resources": bundle,
                    }
                    for i, bundle in sorted((group.get("bundles") or {}).items())
                ],
                is_detached=group.get("lifetime") == "detached",
                stats=group.get("stats"),
            )
        )
    return rows, []


# -- list_* --------------------------------------------------------------------------------------

list_actors = _lister(ActorState, _actors, inspection.collect_cluster)
list_actors.__doc__ = """The actors the GCS knows, dead ones too (``ActorState`` rows)."""
list_nodes = _lister(NodeState, _nodes, inspection.collect_cluster)
list_nodes.__doc__ = """The nodes, dead ones too, the head first (``NodeState`` rows)."""
list_jobs = _lister(JobState, _jobs, inspection.collect_cluster)
list_jobs.__doc__ = """The drivers' jobs, finished ones too (``JobState`` rows)."""
list_workers = _lister(WorkerState, _workers, inspection.collect_cluster)
list_workers.__doc__ = """The worker processes on the live nodes (``WorkerState`` rows)."""
list_objects = _lister(ObjectState, _objects, inspection.collect)
list_objects.__doc__ = """The references to objects, one row per process that holds one
(``ObjectState`` rows)."""
list_tasks = _lister(TaskState, _tasks, inspection.collect_tasks)
list_tasks.__doc__ = """The tasks and actor calls, one row per attempt (``TaskState``
rows): the ended ones from the GCS's task events (FINISHED or FAILED, with error_type and
error_message), oldest first, then the ones not ended yet, as their owners and workers know them
now. A RuntimeWarning says how many events were dropped, if any were."""
list_placement_groups = _lister(
    PlacementGroupState, _placement_groups, views.collect_placement_groups
)
list_placement_groups.__doc__ = """The placement groups the GCS knows, removed ones too
(``PlacementGroupState`` rows)."""


# -- get_* ---------------------------------------------------------------------------------------


def _get_one(
    lister: Callable[..., list[S]], key: str, id: str, address: str | None, timeout: int
) -> S | None:
    if not isinstance(id, str) or not id:
        raise ValueError(f"an id is a non-empty str, got {id!r}")
    rows = lister(address, filters=[(key, "=", id)], timeout=timeout, detail=True, limit=2**31)
    return rows[0] if rows else None


def get_actor(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> ActorState | None:
    """The actor with this id (``ActorState`` with its detail), or None."""
    return _get_one(list_actors, "actor_id", id, address, timeout)


def get_node(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> NodeState | None:
    """The node with this id, or None."""
    return _get_one(list_nodes, "node_id", id, address, timeout)


def get_worker(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> WorkerState | None:
    """The worker with this id, or None."""
    return _get_one(list_workers, "worker_id", id, address, timeout)


def get_job(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> JobState | None:
    """The job with this id, or None."""
    return _get_one(list_jobs, "job_id", id, address, timeout)


def get_placement_group(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> PlacementGroupState | None:
    """The placement group with this id (hex), or None."""
    return _get_one(list_placement_groups, "placement_group_id", id, address, timeout)


def get_task(
    id: str | ObjectRef,
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    _explain: bool = False,
) -> TaskState | None:
    """The task with this id (or the task that makes this ObjectRef): its latest attempt, or
    None if the cluster has no record of it."""
    task_id = id.task_id() if isinstance(id, ObjectRef) else id
    if not isinstance(task_id, str) or not task_id:
        raise ValueError(f"an id is a non-empty str, got {task_id!r}")
    rows = list_tasks(
        address, filters=[("task_id", "=", task_id)], timeout=timeout, detail=True, limit=2**31
    )
    return max(rows, key=lambda row: row.attempt_number) if rows else None


def get_objects(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> list[ObjectState] | None:
    """The references to the object with this id (hex), one per process; None if none."""
    if not isinstance(id, str) or not id:
        raise ValueError(f"an id is a non-empty str, got {id!r}")
    rows = list_objects(
        address, filters=[("object_id", "=", id)], timeout=timeout, detail=True, limit=2**31
    )
    return rows or None


# -- summarize_* ---------------------------------------------------------------------------------


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def summarize_tasks(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """The tasks of ``list_tasks`` counted per function (or method) and state, in Ray's shape:
    ``{"cluster": {"summary": {name: {"func_or_class_name", "type", "state_counts"}},
    "total_tasks", "total_actor_tasks", "total_actor_scheduled", "summary_by"}}``; a task is
    counted once, in the state of its latest attempt. ``num_task_events_dropped`` (not Ray's)
    says how many events the cluster lost."""
    dropped = [0]

    def build(snapshot: inspection.TaskSnapshot) -> tuple[list[TaskState], list[str]]:
        dropped[0] = sum(snapshot.dropped.values())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the count goes in the summary
            return _tasks(snapshot)

    tasks = _lister(TaskState, build, inspection.collect_tasks)(
        address, limit=2**31, timeout=timeout, raise_on_missing_output=raise_on_missing_output
    )
    summary: dict[str, dict[str, Any]] = {}
    totals = {"NORMAL_TASK": 0, "ACTOR_TASK": 0, "ACTOR_CREATION_TASK": 0}
    latest: dict[str, TaskState] = {}
    for task in tasks:
        if task.task_id not in latest or task.attempt_number > latest[task.task_id].attempt_number:
            latest[task.task_id] = task
    for task in latest.values():
        entry = summary.setdefault(
            task.name, {"func_or_class_name": task.name, "type": task.type, "state_counts": {}}
        )
        _count(entry["state_counts"], task.state)
        totals[task.type] = totals.get(task.type, 0) + 1
    return {
        "cluster": {
            "summary": summary,
            "total_tasks": totals["NORMAL_TASK"],
            "total_actor_tasks": totals["ACTOR_TASK"],
            "total_actor_scheduled": totals["ACTOR_CREATION_TASK"],
            "summary_by": "func_name",
            "num_task_events_dropped": dropped[0],
        }
    }


def summarize_actors(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """The actors counted per class and state, in Ray's shape: ``{"cluster": {"summary":
    {class_name: {"class_name", "state_counts"}}, "total_actors", "summary_by"}}``."""
    actors = list_actors(
        address, limit=2**31, timeout=timeout, raise_on_missing_output=raise_on_missing_output
    )
    summary: dict[str, dict[str, Any]] = {}
    for actor in actors:
        entry = summary.setdefault(
            actor.class_name, {"class_name": actor.class_name, "state_counts": {}}
        )
        _count(entry["state_counts"], actor.state)
    return {"cluster": {"summary": summary, "total_actors": len(actors), "summary_by": "class"}}


def summarize_objects(
    address: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """The object references counted per call site (always "disabled": actorflow does not
    record where refs are made), in Ray's shape: ``{"cluster": {"summary": {call_site:
    {"total_objects", "total_size_mb", "total_num_workers", "total_num_nodes",
    "task_state_counts", "task_attempt_number_counts", "ref_type_counts"}}, "total_objects",
    "total_size_mb", "callsite_enabled", "summary_by"}}``."""
    objects = list_objects(
        address, limit=2**31, timeout=timeout, raise_on_missing_output=raise_on_missing_output
    )
    summary: dict[str, dict[str, Any]] = {}
    holders: dict[str, tuple[set, set]] = {}
    total_mb = 0.0
    for obj in objects:
        entry = summary.setdefault(
            obj.call_site,
            {
                "total_objects": 0,
                "total_size_mb": 0.0,
                "total_num_workers": 0,
                "total_num_nodes": 0,
                "task_state_counts": {},
                "task_attempt_number_counts": {},
                "ref_type_counts": {},
            },
        )
        entry["total_objects"] += 1
        if obj.object_size >= 0:
            entry["total_size_mb"] += obj.object_size / 1024**2
            total_mb += obj.object_size / 1024**2
        _count(entry["task_state_counts"], obj.task_status)
        _count(entry["task_attempt_number_counts"], str(obj.attempt_number))
        _count(entry["ref_type_counts"], obj.reference_type)
        pids, ips = holders.setdefault(obj.call_site, (set(), set()))
        pids.add(obj.pid)
        ips.add(obj.ip)
    for call_site, (pids, ips) in holders.items():
        summary[call_site]["total_num_workers"] = len(pids)
        summary[call_site]["total_num_nodes"] = len(ips)
    return {
        "cluster": {
            "summary": summary,
            "total_objects": len(objects),
            "total_size_mb": total_mb,
            "callsite_enabled": False,
            "summary_by": "callsite",
        }
    }
