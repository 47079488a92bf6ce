"""Scheduling strategies, as in ``ray.util.scheduling_strategies``.

``scheduling_strategy="SPREAD"`` spreads tasks or actors over the nodes in turn;
``NodeAffinitySchedulingStrategy(node_id, soft=False)`` runs them on one node (``soft=True``:
there if it is alive and large enough, elsewhere otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    node_id: str
    soft: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ValueError(
                f"node_id must be a node id string (from "
                f"actorflow.get_runtime_context().get_node_id() or "
                f"actorflow.nodes()), got {self.node_id!r}"
            )


__all__ = ["NodeAffinitySchedulingStrategy"]
