"""Scheduling strategies, as in ``ray.util.scheduling_strategies``.

``scheduling_strategy="SPREAD"`` spreads tasks or actors over the nodes in turn;
``NodeAffinitySchedulingStrategy(node_id, soft=False)`` runs them on one node (``soft=True``:
there if it is alive and large enough, elsewhere otherwise).
"""

from actorflow._private.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["NodeAffinitySchedulingStrategy"]
