"""Scheduling strategies, as in ``ray.util.scheduling_strategies``.

``scheduling_strategy="SPREAD"`` spreads tasks or actors over the nodes in turn;
``NodeAffinitySchedulingStrategy(node_id, soft=False)`` runs them on one node (``soft=True``:
there if it is alive and large enough, elsewhere otherwise);
``PlacementGroupSchedulingStrategy(placement_group, placement_group_bundle_index=-1,
placement_group_capture_child_tasks=None)`` runs them in a placement group's bundle.
"""

from actorflow._private.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
