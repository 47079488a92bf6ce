"""Where a placement group's bundles go: a plain policy over the nodes' free resources, no I/O.

``place`` answers one node per bundle, or None when the group does not fit now. Bundles already
placed (a group rescheduled after one of its nodes died) stay where they are and constrain the
others: a STRICT_PACK group stays on one node, a STRICT_SPREAD one on distinct nodes.

  PACK           as few nodes as possible: all on one node if one fits them (the fullest
                 such node), else filling the nodes in turn, the roomiest first;
  STRICT_PACK    all on one node, or not at all;
  SPREAD         over as many nodes as possible: each bundle on the node with the fewest
                 bundles of the group so far (nodes are reused once every node has one);
  STRICT_SPREAD  each bundle on a node of its own, or not at all.

Whether the group could fit on an idle cluster (``feasible``) is the same question asked of the
nodes' total resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

_EPSILON = 1e-9


def _fits(free: Mapping[str, float], request: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) + _EPSILON >= v for k, v in request.items())


def _take(free: dict[str, float], request: Mapping[str, float]) -> None:
    for k, v in request.items():
        free[k] = free.get(k, 0.0) - v


def _room(free: Mapping[str, float]) -> float:
    """How much a node has left (CPUs first): to order nodes by."""
    return free.get("CPU", 0.0) * 1e6 + sum(free.values())


def _sum(bundles: Sequence[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for bundle in bundles:
        for k, v in bundle.items():
            total[k] = total.get(k, 0.0) + v
    return total


def place(
    bundles: Sequence[Mapping[str, float]],
    strategy: str,
    nodes: Mapping[str, Mapping[str, float]],
    placed: Mapping[int, str] | None = None,
) -> dict[int, str] | None:
    """A node id for every bundle not in placed (index -> node id), from nodes (node id -> its
    free resources); None if the group cannot be placed now."""
    placed = dict(placed or {})
    free = {node_id: dict(resources) for node_id, resources in nodes.items()}
    todo = [i for i in range(len(bundles)) if i not in placed]
    if not todo:
        return {}
    if strategy == "STRICT_PACK":
        return _strict_pack(bundles, todo, free, placed)
    if strategy == "PACK":
        return _strict_pack(bundles, todo, free, placed) or _pack(bundles, todo, free, placed)
    if strategy == "SPREAD":
        return _spread(bundles, todo, free, placed, strict=False)
    if strategy == "STRICT_SPREAD":
        return _spread(bundles, todo, free, placed, strict=True)
    raise ValueError(f"unknown placement strategy {strategy!r}")


def feasible(
    bundles: Sequence[Mapping[str, float]],
    strategy: str,
    totals: Mapping[str, Mapping[str, float]],
) -> bool:
    """Could the group be placed were every node idle?"""
    return place(bundles, strategy, totals) is not None


def _strict_pack(
    bundles: Sequence[Mapping[str, float]],
    todo: list[int],
    free: dict[str, dict[str, float]],
    placed: dict[int, str],
) -> dict[int, str] | None:
    need = _sum([bundles[i] for i in todo])
    if placed:  # the group already lives on one node: the rest go there too
        candidates = sorted(set(placed.values()))
    else:
        candidates = sorted(free, key=lambda n: (_room(free[n]), n))  # fullest first: pack
    for node_id in candidates:
        if node_id in free and _fits(free[node_id], need):
            return {i: node_id for i in todo}
    return None


def _pack(
    bundles: Sequence[Mapping[str, float]],
    todo: list[int],
    free: dict[str, dict[str, float]],
    placed: dict[int, str],
) -> dict[int, str] | None:
    used = list(dict.fromkeys(placed.values()))  # nodes the group is on, in order of use
    result: dict[int, str] = {}
    for i in todo:
        # A new node: the one with the most room, so that fewer nodes are needed.
        others = sorted((n for n in free if n not in used), key=lambda n: (-_room(free[n]), n))
        for node_id in [*used, *others]:
            if node_id in free and _fits(free[node_id], bundles[i]):
                _take(free[node_id], bundles[i])
                result[i] = node_id
                if node_id not in used:
                    used.append(node_id)
                break
        else:
            return None
    return result


def _spread(
    bundles: Sequence[Mapping[str, float]],
    todo: list[int],
    free: dict[str, dict[str, float]],
    placed: dict[int, str],
    strict: bool,
) -> dict[int, str] | None:
    count: dict[str, int] = dict.fromkeys(free, 0)
    for node_id in placed.values():
        count[node_id] = count.get(node_id, 0) + 1
    result: dict[int, str] = {}
    for i in todo:
        candidates = [
            n for n in free if _fits(free[n], bundles[i]) and not (strict and count.get(n, 0))
        ]
        if not candidates:
            return None
        # The node with the fewest of the group's bundles, then the most room left.
        node_id = min(candidates, key=lambda n: (count.get(n, 0), -_room(free[n]), n))
        _take(free[node_id], bundles[i])
        count[node_id] = count.get(node_id, 0) + 1
        result[i] = node_id
    return result
