"""Which node runs a task or hosts an actor: a plain policy over a snapshot of the cluster.

The raylet asks it for every lease request (the answer is itself, or a node to spill back to)
and the GCS asks it where to create an actor. Snapshots of other nodes come with the heartbeat
answers, so they can be a second old; a node that was picked but is full queues the request.

Strategies (the wire form of ``scheduling_strategy``):
  None       local node if it fits now, else a node that fits now, else queue where it could fit;
  "SPREAD"   the next node in turn among those that fit now (or could fit);
  ["node", node_id, soft]   that node; with soft, the default policy when it is dead or too small.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actorflow._private import errors
from actorflow._private.node.resources import describe

_EPSILON = 1e-9


@dataclass
class NodeView:
    node_id: str
    address: str
    total: dict[str, float]
    available: dict[str, float] = field(default_factory=dict)
    alive: bool = True

    def feasible(self, request: Mapping[str, float]) -> bool:
        return all(self.total.get(k, 0.0) + _EPSILON >= v for k, v in request.items())

    def fits(self, request: Mapping[str, float]) -> bool:
        return all(self.available.get(k, 0.0) + _EPSILON >= v for k, v in request.items())

    def take(self, request: Mapping[str, float]) -> None:
        """Count a request as placed here until the node's next report says otherwise."""
        for k, v in request.items():
            self.available[k] = self.available.get(k, 0.0) - v


class Scheduler:
    def __init__(self) -> None:
        self._spread_turn = 0

    def pick(
        self,
        nodes: Iterable[NodeView],
        request: Mapping[str, float],
        strategy: Any,
        local_node_id: str,
    ) -> NodeView:
        """The node for this request; TaskUnschedulableError when no live node could ever fit
        it (or a hard node affinity cannot be honoured)."""
        alive = [n for n in nodes if n.alive]
        if isinstance(strategy, list) and strategy and strategy[0] == "node":
            _, node_id, soft = strategy
            target = next((n for n in alive if n.node_id == node_id), None)
            if target is not None and target.feasible(request):
                return target
            if not soft:
                why = (
                    "is not alive or not part of the cluster"
                    if target is None
                    else f"has only {describe(target.total)}"
                )
                raise errors.TaskUnschedulableError(
                    f"NodeAffinitySchedulingStrategy(node_id={node_id!r}, soft=False): the node "
                    f"{why}, so the request {describe(request)} can never run there"
                )
            strategy = None
        feasible = [n for n in alive if n.feasible(request)]
        if not feasible:
            largest = max(alive, key=lambda n: n.total.get("CPU", 0.0), default=None)
            has = (
                f"the largest node has {describe(largest.total)}"
                if largest is not None
                else "no node is alive"
            )
            raise errors.TaskUnschedulableError(
                f"no node in the cluster can ever satisfy the request {describe(request)}: {has}"
            )
        fitting = [n for n in feasible if n.fits(request)]
        if strategy == "SPREAD":
            candidates = sorted(fitting or feasible, key=lambda n: n.node_id)
            self._spread_turn += 1
            return candidates[self._spread_turn % len(candidates)]
        local = next((n for n in feasible if n.node_id == local_node_id), None)
        if local is not None and local.fits(request):
            return local
        if fitting:
            # The node with the most of the scarcest asked-for resource left.
            return max(
                fitting,
                key=lambda n: min(
                    (n.available.get(k, 0.0) / v for k, v in request.items() if v > 0), default=0.0
                ),
            )
        return local if local is not None else feasible[0]
