"""Placement groups, as in ``ray.util.placement_group``: reserve bundles of resources across
the cluster's nodes together, then run tasks and actors in them.

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    actorflow.get(pg.ready())           # or pg.wait(timeout_seconds), or await pg.ready()
    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    remove_placement_group(pg)          # gives the bundles back, kills the group's actors

Strategies: PACK (few nodes), SPREAD (many nodes), STRICT_PACK (one node), STRICT_SPREAD (one
node per bundle). A group that does not fit now waits (PENDING) until resources free up or
nodes join. Groups end with their job (or with the actor that created them) unless
``lifetime="detached"``.
"""

from __future__ import annotations

from typing import Any

from actorflow._private.worker import placement_groups as _groups
from actorflow._private.worker.placement_groups import PlacementGroup, PlacementGroupID

__all__ = [
    "PlacementGroup",
    "PlacementGroupID",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    **ray_options: Any,
) -> PlacementGroup:
    """Reserve bundles of resources together (asynchronously: ``ready()`` or ``wait()`` tell
    when they are). Ray's ``_soft_target_node_id``, ``bundle_label_selector`` and
    ``fallback_strategy`` are refused with a clear error."""
    if ray_options:
        raise ValueError(
            f"placement_group(): {', '.join(sorted(ray_options))} not supported by actorflow"
        )
    return _groups.create(bundles, strategy, name, lifetime)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove the group (asynchronously): its bundles go back to their nodes, the actors in it
    are killed and the tasks in it fail."""
    _groups.remove(placement_group)


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group of this name in this job's namespace (ValueError if there is none)."""
    return _groups.by_name(placement_group_name)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """The group's row (placement_group_id, name, bundles, bundles_to_node_id, strategy, state,
    stats), or every group's by id."""
    return _groups.table(placement_group)


def get_current_placement_group() -> PlacementGroup | None:
    """The group the running task or actor was placed in (None in a driver or outside one)."""
    return _groups.current()
