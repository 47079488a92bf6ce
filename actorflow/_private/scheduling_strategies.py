"""Scheduling strategies (public as ``actorflow.util.scheduling_strategies``) and their wire form.

``scheduling_strategy="SPREAD"`` spreads tasks or actors over the nodes in turn;
``NodeAffinitySchedulingStrategy(node_id, soft=False)`` runs them on one node (``soft=True``:
there if it is alive and large enough, elsewhere otherwise);
``PlacementGroupSchedulingStrategy(placement_group, placement_group_bundle_index=-1,
placement_group_capture_child_tasks=None)`` runs them in a bundle of a placement group (-1: any
of its bundles), taking from the bundle's reserved resources. With capture, tasks and actors
they create without a strategy of their own run in the same group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PUBLIC_MODULE = "actorflow.util.scheduling_strategies"
_EPSILON = 1e-9


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


class PlacementGroupSchedulingStrategy:
    """Run a task or actor in a bundle of a placement group (placement_group None: in none,
    not even the one its parent captures)."""

    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        if placement_group is not None and not isinstance(
            getattr(placement_group, "id", None), str
        ):
            raise TypeError(
                f"placement_group must be a PlacementGroup (from "
                f"actorflow.util.placement_group.placement_group()) or None, got "
                f"{placement_group!r}"
            )
        index = placement_group_bundle_index
        if isinstance(index, bool) or not isinstance(index, int) or index < -1:
            raise ValueError(
                f"placement_group_bundle_index must be an int >= -1 (-1: any bundle), got {index!r}"
            )
        capture = placement_group_capture_child_tasks
        if capture is not None and not isinstance(capture, bool):
            raise TypeError(
                f"placement_group_capture_child_tasks must be a bool or None, got {capture!r}"
            )
        self.placement_group = placement_group
        self.placement_group_bundle_index = index
        self.placement_group_capture_child_tasks = capture

    def __repr__(self) -> str:
        return (
            f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
            f"placement_group_bundle_index={self.placement_group_bundle_index}, "
            f"placement_group_capture_child_tasks={self.placement_group_capture_child_tasks})"
        )


PlacementGroupSchedulingStrategy.__module__ = PUBLIC_MODULE


def is_group_wire(wire: Any) -> bool:
    """Is this wire form a placement group's: ["pg", pg_id, bundle_index, capture, bundles]?"""
    return type(wire) is list and len(wire) == 5 and wire[0] == "pg"


def strategy_to_wire(
    strategy: Any,
    resources: Mapping[str, float] | None = None,
    what: str = "",
    current_group: list | None = None,
) -> Any:
    """The msgpack form of a ``scheduling_strategy`` option (checked in options.py).

    current_group is the wire form of the placement group the calling task or actor runs in:
    with capture, a call without a strategy of its own runs in it too (as in Ray)."""
    if strategy is None:
        if current_group is not None and current_group[3]:
            _, pg_id, _index, _capture, bundles = current_group
            _check_fits(pg_id, bundles, -1, resources or {}, what)
            return ["pg", pg_id, -1, True, bundles]
        return None
    if strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return "SPREAD"
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return _group_wire(strategy, resources or {}, what, current_group)
    node_id = getattr(strategy, "node_id", None)
    if isinstance(node_id, str):
        return ["node", node_id, bool(getattr(strategy, "soft", False))]
    raise ValueError(f"unknown scheduling_strategy {strategy!r}")


def _group_wire(
    strategy: PlacementGroupSchedulingStrategy,
    resources: Mapping[str, float],
    what: str,
    current_group: list | None,
) -> Any:
    group = strategy.placement_group
    index = strategy.placement_group_bundle_index
    capture = strategy.placement_group_capture_child_tasks
    if capture is None:  # as the parent does
        capture = bool(current_group is not None and current_group[3])
    if group is None or not group.id:
        if index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
        return None
    bundles = [dict(b) for b in group.bundle_specs]
    if index >= len(bundles):
        raise ValueError(
            f"placement group bundle index {index} is invalid. Valid placement group "
            f"indexes: 0 to {len(bundles) - 1}."
        )
    _check_fits(str(group.id), bundles, index, resources, what)
    return ["pg", str(group.id), index, bool(capture), bundles]


def _check_fits(
    pg_id: str, bundles: list, index: int, resources: Mapping[str, float], what: str
) -> None:
    """A request no bundle it may use could hold is an error now, not a task that never runs."""
    usable = [bundles[index]] if index >= 0 else bundles
    for bundle in usable:
        if all(bundle.get(k, 0.0) + _EPSILON >= v for k, v in resources.items() if v > 0):
            return
    which = f"bundle {index}" if index >= 0 else "any bundles"
    # Ray's wording, the request as the user wrote it (whole numbers without ".0").
    request = {k: int(v) if float(v).is_integer() else v for k, v in resources.items()}
    raise ValueError(
        f"Cannot schedule {what or 'the task'} with the placement group because the resource "
        f"request {request} cannot fit into {which} for the placement group, {bundles}. "
        f"(placement group {pg_id})"
    )
