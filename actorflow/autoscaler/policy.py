"""The autoscaling policy, as plain data in and a decision out (no I/O): how many worker nodes to
add for the pending demand, and which idle ones to remove.

Demand is what the GCS sums (``actorflow.util.state.cluster_demand``): resource shapes of the
lease requests queued for lack of resources, tasks and actors alike, and of late infeasible
requests. The requests are packed first into what the live nodes have free now (a node that just
joined absorbs the demand that made it come), then into the nodes still starting, then into new
nodes of the worker shape, first fit by decreasing size; shapes no worker node could hold are
left out (and named in the decision).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_EPSILON = 1e-9


@dataclass(frozen=True)
class Policy:
    """worker_shape: the resources of one worker node (e.g. {"CPU": 2}); min_workers and
    max_workers bound the worker nodes the provider runs; a worker node idle (no lease, queued
    request, actor, kept worker or primary object copy) for idle_timeout_seconds is drained and
    removed; upscale_for_infeasible: count requests no node could fit as demand too."""

    worker_shape: Mapping[str, float]
    min_workers: int = 0
    max_workers: int = 10
    idle_timeout_seconds: float = 60.0
    upscale_for_infeasible: bool = True

    def __post_init__(self) -> None:
        if not self.worker_shape or any(v < 0 for v in self.worker_shape.values()):
            raise ValueError(
                f"worker_shape must name the resources of one worker node, e.g. "
                f"{{'CPU': 2}}, got {dict(self.worker_shape)!r}"
            )
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError(
                f"need 0 <= min_workers <= max_workers, got min_workers={self.min_workers}, "
                f"max_workers={self.max_workers}"
            )
        if self.idle_timeout_seconds < 0:
            raise ValueError(f"idle_timeout_seconds must be >= 0, got {self.idle_timeout_seconds}")


@dataclass(frozen=True)
class WorkerState:
    """One worker node the provider runs: its handle, and the cluster node it became (None
    while it starts: not registered with the GCS yet)."""

    handle: str
    node: Mapping[str, Any] | None = None  # its row of cluster_demand()["nodes"]


@dataclass
class Decision:
    launch: int = 0  # worker nodes to add
    remove: list[str] = field(default_factory=list)  # handles of idle worker nodes to remove
    unfit: list[dict[str, float]] = field(default_factory=list)  # shapes no worker could hold
    needed: int = 0  # new worker nodes the demand asks for, before the bounds


def _fits(free: Mapping[str, float], shape: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) + _EPSILON >= v for k, v in shape.items())


def _take(free: dict[str, float], shape: Mapping[str, float]) -> None:
    for k, v in shape.items():
        free[k] = free.get(k, 0.0) - v


def _size(shape: Mapping[str, float]) -> tuple:
    return (shape.get("GPU", 0.0), shape.get("CPU", 0.0), sum(shape.values()))


def nodes_needed(
    requests: Sequence[Mapping[str, float]],
    free: Sequence[Mapping[str, float]],
    worker_shape: Mapping[str, float],
) -> tuple[int, list[dict[str, float]]]:
    """New worker nodes needed for the requests after packing them into free (what the live
    and starting nodes have), first fit decreasing; and the shapes no worker could hold."""
    bins = [dict(f) for f in free]
    new = 0
    unfit: list[dict[str, float]] = []
    for shape in sorted(requests, key=_size, reverse=True):
        if not _fits(worker_shape, shape):
            if not any(_fits(b, shape) for b in bins) and dict(shape) not in unfit:
                unfit.append(dict(shape))
            continue
        for b in bins:
            if _fits(b, shape):
                _take(b, shape)
                break
        else:
            b = dict(worker_shape)
            _take(b, shape)
            bins.append(b)
            new += 1
    return new, unfit


def requests_of(demand: Mapping[str, Any], with_infeasible: bool) -> list[dict[str, float]]:
    """One shape per waiting request of the demand (its rows expanded by count)."""
    rows = list(demand.get("pending") or [])
    if with_infeasible:
        rows += list(demand.get("infeasible") or [])
    return [dict(row["shape"]) for row in rows for _ in range(int(row["count"]))]


def decide(policy: Policy, demand: Mapping[str, Any], workers: Sequence[WorkerState]) -> Decision:
    """How many worker nodes to launch and which idle ones to remove, now."""
    live = [n for n in demand.get("nodes") or [] if not n.get("draining")]
    starting = [w for w in workers if w.node is None]
    free = [dict(n.get("available") or {}) for n in live]
    free += [dict(policy.worker_shape) for _ in starting]
    requests = requests_of(demand, policy.upscale_for_infeasible)
    needed, unfit = nodes_needed(requests, free, policy.worker_shape)
    room = policy.max_workers - len(workers)
    launch = min(needed, room)
    launch = max(launch, policy.min_workers - len(workers), 0)
    decision = Decision(launch=launch, unfit=unfit, needed=needed)
    if any(_fits(policy.worker_shape, r) for r in requests):
        return decision  # work is waiting: keep every node (idle ones are about to get some)
    removable = len(workers) - policy.min_workers
    idle = sorted(
        (
            w
            for w in workers
            if w.node is not None
            and w.node.get("idle")
            and not w.node.get("is_head")
            and not w.node.get("draining")
            and not w.node.get("hosts_actors")
            and float(w.node.get("idle_seconds") or 0.0) >= policy.idle_timeout_seconds
        ),
        key=lambda w: -float(w.node.get("idle_seconds") or 0.0) if w.node else 0.0,
    )
    decision.remove = [w.handle for w in idle[: max(0, removable)]]
    return decision


def describe(shape: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"
