"""The rows of the state API (Ray's ``ray.util.state.common``): one dataclass per kind, with
Ray's field names, read as attributes (``actor.state``) or as a dict (``actor["state"]``,
``actor.get("pid")``, ``actor.asdict()``), and the filters ``list_*`` take.

A field is marked ``filterable`` (it may be named in a filter) and ``detail`` (filled only when
``detail=True``; None otherwise), as in Ray. Fields actorflow has nothing for stay None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

__all__ = [
    "ActorState",
    "JobState",
    "NodeState",
    "ObjectState",
    "PlacementGroupState",
    "StateSchema",
    "TaskState",
    "WorkerState",
    "apply_filters",
]

DEFAULT_LIMIT = 100
DEFAULT_RPC_TIMEOUT = 30
PREDICATES = ("=", "!=")


def column(*, filterable: bool, detail: bool = False, default: Any = None) -> Any:
    """A field of a state row (Ray's ``state_column``): detail fields default to None."""
    metadata = {"filterable": filterable, "detail": detail}
    if isinstance(default, (dict, list)):
        return field(default_factory=type(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class StateSchema:
    """The base of every row: dict-like access on top of the dataclass, as Ray's."""

    kind: ClassVar[str] = ""

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __getitem__(self, key: str) -> Any:
        if key not in self.columns():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    @classmethod
    def list_columns(cls, detail: bool = True) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if detail or not f.metadata.get("detail")]

    @classmethod
    def columns(cls) -> set[str]:
        return set(cls.list_columns(detail=True))

    @classmethod
    def filterable_columns(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls) if f.metadata.get("filterable")}

    @classmethod
    def base_columns(cls) -> set[str]:
        return set(cls.list_columns(detail=False))

    @classmethod
    def detail_columns(cls) -> set[str]:
        return cls.columns()


@dataclass
class ActorState(StateSchema):
    kind: ClassVar[str] = "actors"
    actor_id: str = column(filterable=True, default="")
    class_name: str = column(filterable=True, default="")
    state: str = column(filterable=True, default="")  # PENDING_CREATION ALIVE RESTARTING DEAD
    job_id: str = column(filterable=True, default="")
    name: str = column(filterable=True, default="")
    node_id: str | None = column(filterable=True)
    pid: int | None = column(filterable=True)
    ray_namespace: str | None = column(filterable=True)
    serialized_runtime_env: str | None = column(filterable=False, detail=True)
    required_resources: dict | None = column(filterable=False, detail=True)
    death_cause: dict | None = column(filterable=False, detail=True)
    is_detached: bool | None = column(filterable=False, detail=True)
    placement_group_id: str | None = column(filterable=True, detail=True)
    repr_name: str | None = column(filterable=True, detail=True)
    num_restarts: int | None = column(filterable=False, detail=True)
    num_restarts_due_to_lineage_reconstruction: int | None = column(filterable=False, detail=True)
    call_site: str | None = column(filterable=False, detail=True)
    label_selector: dict | None = column(filterable=False, detail=True)


@dataclass
class NodeState(StateSchema):
    kind: ClassVar[str] = "nodes"
    node_id: str = column(filterable=True, default="")
    node_ip: str = column(filterable=True, default="")
    is_head_node: bool = column(filterable=True, default=False)
    state: str = column(filterable=True, default="")  # ALIVE or DEAD
    state_message: str | None = column(filterable=False)
    node_name: str = column(filterable=True, default="")
    resources_total: dict = column(filterable=False, default={})
    labels: dict = column(filterable=False, default={})
    start_time_ms: int | None = column(filterable=False, detail=True)
    end_time_ms: int | None = column(filterable=False, detail=True)


@dataclass
class JobState(StateSchema):
    """A driver's job (Ray's ``JobDetails`` fields; actorflow has no submitted jobs)."""

    kind: ClassVar[str] = "jobs"
    job_id: str = column(filterable=True, default="")
    type: str = column(filterable=True, default="DRIVER")
    submission_id: str | None = column(filterable=True)
    status: str = column(filterable=True, default="")  # RUNNING or SUCCEEDED
    entrypoint: str = column(filterable=False, default="")
    message: str | None = column(filterable=False)
    error_type: str | None = column(filterable=False)
    start_time: int | None = column(filterable=False)  # ms since the epoch
    end_time: int | None = column(filterable=False)
    metadata: dict = column(filterable=False, default={})
    runtime_env: dict = column(filterable=False, default={})
    driver_info: dict | None = column(filterable=False)
    driver_agent_http_address: str | None = column(filterable=False)
    driver_node_id: str | None = column(filterable=True)
    driver_exit_code: int | None = column(filterable=False)


@dataclass
class WorkerState(StateSchema):
    kind: ClassVar[str] = "workers"
    worker_id: str = column(filterable=True, default="")
    is_alive: bool = column(filterable=True, default=True)
    worker_type: str = column(filterable=True, default="WORKER")
    exit_type: str | None = column(filterable=True)
    node_id: str = column(filterable=True, default="")
    ip: str = column(filterable=True, default="")
    pid: int | None = column(filterable=True)
    exit_detail: str | None = column(filterable=False, detail=True)
    worker_launch_time_ms: int | None = column(filterable=False, detail=True)
    worker_launched_time_ms: int | None = column(filterable=False, detail=True)
    start_time_ms: int | None = column(filterable=False, detail=True)
    end_time_ms: int | None = column(filterable=False, detail=True)
    debugger_port: int | None = column(filterable=True, detail=True)
    num_paused_threads: int | None = column(filterable=True, detail=True)


@dataclass
class TaskState(StateSchema):
    kind: ClassVar[str] = "tasks"
    task_id: str = column(filterable=True, default="")
    attempt_number: int = column(filterable=True, default=0)
    name: str = column(filterable=True, default="")
    # PENDING_ARGS_AVAIL PENDING_NODE_ASSIGNMENT SUBMITTED_TO_WORKER RUNNING
    state: str = column(filterable=True, default="")
    job_id: str = column(filterable=True, default="")
    actor_id: str | None = column(filterable=True)
    type: str = column(filterable=True, default="NORMAL_TASK")  # or ACTOR_TASK
    func_or_class_name: str = column(filterable=True, default="")
    parent_task_id: str = column(filterable=True, default="")
    node_id: str | None = column(filterable=True)
    worker_id: str | None = column(filterable=True)
    worker_pid: int | None = column(filterable=True)
    error_type: str | None = column(filterable=True)
    language: str | None = column(filterable=True, detail=True)
    required_resources: dict | None = column(filterable=False, detail=True)
    runtime_env_info: dict | None = column(filterable=False, detail=True)
    placement_group_id: str | None = column(filterable=True, detail=True)
    events: list | None = column(filterable=False, detail=True)
    profiling_data: dict | None = column(filterable=False, detail=True)
    creation_time_ms: int | None = column(filterable=False, detail=True)
    start_time_ms: int | None = column(filterable=False, detail=True)
    end_time_ms: int | None = column(filterable=False, detail=True)
    task_log_info: dict | None = column(filterable=False, detail=True)
    error_message: str | None = column(filterable=False, detail=True)
    is_debugger_paused: bool | None = column(filterable=True, detail=True)
    call_site: str | None = column(filterable=False, detail=True)
    label_selector: dict | None = column(filterable=False, detail=True)


@dataclass
class ObjectState(StateSchema):
    """One reference to an object: a row per process that holds one (as Ray's)."""

    kind: ClassVar[str] = "objects"
    object_id: str = column(filterable=True, default="")
    object_size: int = column(filterable=True, default=-1)
    task_status: str = column(filterable=True, default="")  # FINISHED FAILED or PENDING
    attempt_number: int = column(filterable=True, default=0)
    # LOCAL_REFERENCE USED_BY_PENDING_TASK CAPTURED_IN_OBJECT PINNED_IN_MEMORY
    reference_type: str = column(filterable=True, default="")
    call_site: str = column(filterable=True, default="disabled")
    type: str = column(filterable=True, default="WORKER")  # DRIVER or WORKER
    pid: int | None = column(filterable=True)
    ip: str = column(filterable=True, default="")


@dataclass
class PlacementGroupState(StateSchema):
    kind: ClassVar[str] = "placement groups"
    placement_group_id: str = column(filterable=True, default="")
    name: str = column(filterable=True, default="")
    creator_job_id: str = column(filterable=True, default="")
    state: str = column(filterable=True, default="")
    bundles: list | None = column(filterable=False, detail=True)
    is_detached: bool | None = column(filterable=True, detail=True)
    stats: dict | None = column(filterable=False, detail=True)


# -- filters --------------------------------------------------------------------------------------

S = TypeVar("S", bound=StateSchema)
Filter = tuple[str, str, Any]


def check_filters(schema: type[StateSchema], filters: Sequence[Any] | None) -> list[Filter]:
    """The filters as (key, predicate, value) triples; ValueError naming what is wrong."""
    checked: list[Filter] = []
    for item in filters or ():
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(
                f"a filter is a (key, predicate, value) tuple such as ('state', '=', 'ALIVE'), "
                f"got {item!r}"
            )
        key, predicate, value = item
        if predicate not in PREDICATES:
            raise ValueError(
                f"Unsupported filter predicate {predicate!r} is given. Available predicates: "
                f"{', '.join(PREDICATES)}."
            )
        if key not in schema.filterable_columns():
            raise ValueError(
                f"Given filter column {key!r} is not supported for {schema.kind}: filter on "
                f"one of {', '.join(sorted(schema.filterable_columns()))}"
            )
        checked.append((key, predicate, value))
    return checked


def _matches(actual: Any, wanted: Any) -> bool:
    """Ray's comparison: strings without regard to case, and a string given for a bool or a
    number compared as one ("true", "3")."""
    if isinstance(wanted, str) and isinstance(actual, str):
        return actual.lower() == wanted.lower()
    if isinstance(wanted, str) and isinstance(actual, bool):
        return actual == (wanted.strip().lower() in ("true", "1", "yes"))
    if isinstance(wanted, str) and isinstance(actual, (int, float)):
        try:
            return actual == type(actual)(wanted)
        except ValueError:
            return False
    return bool(actual == wanted)


def apply_filters(rows: list[S], filters: list[Filter]) -> list[S]:
    """The rows that satisfy every filter (they are ANDed, as Ray's)."""
    return [
        row
        for row in rows
        if all(
            _matches(getattr(row, key), value) == (predicate == "=")
            for key, predicate, value in filters
        )
    ]


def without_detail(row: S) -> S:
    """The row with its detail fields cleared (Ray's rows when ``detail=False``)."""
    for f in dataclasses.fields(row):
        if f.metadata.get("detail"):
            setattr(row, f.name, None)
    return row
