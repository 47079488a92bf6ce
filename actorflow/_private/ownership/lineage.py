"""Lineage: what an owner keeps of the tasks it submitted, to run one again when every copy of
a result of it is lost (sans-IO).

A task's spec (its function, its arguments' wire, the refs it took, its options and the
retries it has left) is kept while any of its results is still in the owner's table, or while
the kept spec of another task needs one of its results as an argument (so that a chain can be
re-created from its start, even when the intermediate refs were dropped: their values go, the
specs stay, as with Ray's lineage pinning). The specs are bounded in bytes: beyond
``max_bytes`` the oldest are evicted, and their results can then no longer be re-created
(``LineageEvicted``). Values are never kept here.

The table tells us which results went (``note_dropped``, from any thread: it only appends to a
deque); the rest runs on the runtime loop.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from actorflow._private import ids, serialization

# Bytes counted for a spec beyond its arguments' wire: the record and its small fields.
SPEC_OVERHEAD = 512
_NO_DEPS: list[bytes] = []  # the deps of every spec that has none (never changed)


class TaskSpec:
    """A kept task: its call record as submitted (the submitter's, duck-typed here: task_id,
    num_returns, retries_left, fn_name, args_wire) and the ref arguments it took."""

    __slots__ = (
        "task",
        "arg_refs",
        "max_retries",
        "size",
        "live",
        "dependents",
        "deps",
        "attempts",
    )

    def __init__(self, task: Any, arg_refs: list, max_retries: int) -> None:
        self.task = task
        self.arg_refs = arg_refs  # [[position or keyword, obj_id, owner], ...]
        self.max_retries = max_retries
        self.size = 0
        self.live = 0  # its results still in the owner's table
        self.dependents = 0  # kept specs that take one of its results as an argument
        self.deps: list[bytes] = _NO_DEPS  # task ids of the kept specs it takes results of
        self.attempts = 1  # runs so far (the first, retries and re-creations)

    @property
    def task_id(self) -> bytes:
        return self.task.task_id  # type: ignore[no-any-return]

    @property
    def fn_name(self) -> str:
        return self.task.fn_name  # type: ignore[no-any-return]

    @property
    def retries_left(self) -> int:
        return self.task.retries_left  # type: ignore[no-any-return]

    @property
    def return_ids(self) -> list[bytes]:
        return [ids.object_id(self.task_id, i + 1) for i in range(self.task.num_returns)]


class Lineage:
    def __init__(self, enabled: bool = True, max_bytes: int = 1 << 30) -> None:
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.specs: dict[bytes, TaskSpec] = {}
        self.bytes = 0
        self.evicted: dict[bytes, int] = {}  # task id -> its results still referenced
        self.no_lineage: dict[bytes, str] = {}  # large objects we own that have none: reason
        self._dropped: deque[bytes] = deque()

    # -- keeping ----------------------------------------------------------------------------

    def record(self, spec: TaskSpec) -> None:
        """A task was submitted: keep its spec (loop thread)."""
        if self._dropped:
            self.apply_drops()
        specs = self.specs
        task = spec.task
        if not self.enabled or task.task_id in specs:
            return
        spec.live = task.num_returns
        wire = task.args_wire
        size = SPEC_OVERHEAD + (len(wire[1]) if isinstance(wire[1], (bytes, str)) else 64)
        if wire[0] == serialization.PICKLED and len(wire) > 2 and wire[2]:  # buffers
            size += sum(memoryview(b).nbytes for b in wire[2])
        if spec.arg_refs:
            size += 64 * len(spec.arg_refs)
            for _position, obj_id, _owner in spec.arg_refs:
                dep = specs.get(obj_id[: ids.TASK_ID_BYTES])
                if dep is not None and dep.task_id not in spec.deps:
                    dep.dependents += 1
                    if spec.deps is _NO_DEPS:
                        spec.deps = []
                    spec.deps.append(dep.task_id)
        spec.size = size
        specs[task.task_id] = spec
        self.bytes += size
        if self.bytes > self.max_bytes:
            while self.bytes > self.max_bytes and specs:
                self._evict(next(iter(specs.values())))

    def note_dropped(self, obj_id: bytes) -> None:
        """The owner's table let go of obj_id (any thread: applied later on the loop)."""
        task_id = obj_id[: ids.TASK_ID_BYTES]
        if task_id in self.specs or task_id in self.evicted or obj_id in self.no_lineage:
            self._dropped.append(obj_id)

    def apply_drops(self) -> None:
        while self._dropped:
            obj_id = self._dropped.popleft()
            self.no_lineage.pop(obj_id, None)
            task_id = ids.task_id_of(obj_id)
            spec = self.specs.get(task_id)
            if spec is not None:
                spec.live -= 1
                self._release_if_unused(spec)
            elif task_id in self.evicted:
                self.evicted[task_id] -= 1
                if self.evicted[task_id] <= 0:
                    del self.evicted[task_id]

    def mark(self, obj_id: bytes, reason: str) -> None:
        """A large object we own that cannot be re-created (a put, an actor method's result):
        the reason is kept while it lives, for the error its loss gives."""
        self.no_lineage[obj_id] = reason

    def _release_if_unused(self, spec: TaskSpec) -> None:
        if spec.live > 0 or spec.dependents > 0:
            return
        self._forget(spec)

    def _forget(self, spec: TaskSpec) -> None:
        if self.specs.pop(spec.task_id, None) is None:
            return
        self.bytes -= spec.size
        for dep_id in spec.deps:
            dep = self.specs.get(dep_id)
            if dep is not None:
                dep.dependents -= 1
                self._release_if_unused(dep)
        spec.deps = _NO_DEPS

    def _evict(self, spec: TaskSpec) -> None:
        if spec.live > 0:
            self.evicted[spec.task_id] = spec.live
        self._forget(spec)

    # -- re-creating ------------------------------------------------------------------------

    def spec_of(self, obj_id: bytes) -> TaskSpec | None:
        self.apply_drops()
        return self.specs.get(ids.task_id_of(obj_id))

    def why_not(self, obj_id: bytes, owned: bool) -> tuple[str, str] | None:
        """Why obj_id cannot be re-created, as (reason, explanation); None if it can be."""
        self.apply_drops()
        task_id = ids.task_id_of(obj_id)
        if not owned:
            return "BORROWED", "only its owner can re-create it"
        spec = self.specs.get(task_id)
        if spec is not None:
            if spec.retries_left == 0:
                if spec.max_retries == 0:
                    return (
                        "RETRIES_DISABLED",
                        f"its task {spec.fn_name}() was made with max_retries=0: give it "
                        f"max_retries=N to let it be re-run",
                    )
                return (
                    "MAX_ATTEMPTS_EXCEEDED",
                    f"its task {spec.fn_name}() has no retries left (max_retries="
                    f"{spec.max_retries}, made again {spec.attempts - 1} time(s) so far)",
                )
            return None
        if task_id in self.evicted:
            return (
                "LINEAGE_EVICTED",
                f"the task that made it is no longer kept: its lineage was evicted to stay "
                f"within max_lineage_bytes={self.max_bytes} (ACTORFLOW_MAX_LINEAGE_BYTES)",
            )
        reason = self.no_lineage.get(obj_id)
        if reason == "PUT":
            return "PUT", "it was made by put(), which has no task to re-run"
        if reason == "ACTOR_TASK":
            return "ACTOR_TASK", "it is the result of an actor method, which is not re-run"
        if not self.enabled:
            return (
                "LINEAGE_DISABLED",
                "lineage reconstruction is off (lineage_pinning_enabled=False)",
            )
        if ids.index_of(obj_id) == 0:
            return "PUT", "it was made by put(), which has no task to re-run"
        return "GENERATOR", "no task that made it is kept (a generator's item, or a nested put)"

    def started_again(self, spec: TaskSpec, task: Any) -> None:
        """The task is run again (task: its new call record) to re-create its results: one
        retry spent, as Ray counts them."""
        if task.retries_left > 0:
            task.retries_left -= 1
        spec.task = task
        spec.attempts += 1

    def stats(self) -> dict[str, int]:
        self.apply_drops()
        return {"specs": len(self.specs), "bytes": self.bytes, "evicted": len(self.evicted)}
