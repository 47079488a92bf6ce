"""Scheduling strategies (public as ``actorflow.util.scheduling_strategies``) and their wire form.

``scheduling_strategy="SPREAD"`` spreads tasks or actors over the nodes in turn;
``NodeAffinitySchedulingStrategy(node_id, soft=False)`` runs them on one node (``soft=True``:
there if it is alive and large enough, elsewhere otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PUBLIC_MODULE = "actorflow.util.scheduling_strategies"


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


NodeAffinitySchedulingStrategy.__module__ = PUBLIC_MODULE


def strategy_to_wire(strategy: Any) -> Any:
    """The msgpack form of a ``scheduling_strategy`` option (checked in options.py)."""
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return "SPREAD"
    node_id = getattr(strategy, "node_id", None)
    if isinstance(node_id, str):
        return ["node", node_id, bool(getattr(strategy, "soft", False))]
    raise ValueError(f"unknown scheduling_strategy {strategy!r}")
