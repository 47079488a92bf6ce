"""A node's placement-group bundles: resources carved out of the node's, a plain state object.

The GCS reserves a group in two phases: ``prepare`` takes the bundles' resources from the node
(all or none), ``commit`` lets leases use them, ``release`` gives them back (a failed
reservation, a removed group). A committed bundle is a small pool of its own: a lease in it
takes from the bundle, not from the node, and gives back to the bundle. GPUs are carved out as
instances, so work in a bundle sees the bundle's GPUs in CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from actorflow._private import errors
from actorflow._private.node.resources import NodeResources, describe, normalize

Key = tuple[str, int]  # (placement group id, bundle index)


@dataclass(eq=False)
class Bundle:
    pg_id: str
    index: int
    total: dict[str, float]
    gpu_ids: list[int]  # the node's GPU instances it holds
    pool: NodeResources  # what is free in it
    committed: bool = False

    @property
    def key(self) -> Key:
        return (self.pg_id, self.index)


class BundleTable:
    def __init__(self, node: NodeResources) -> None:
        self.node = node
        self.bundles: dict[Key, Bundle] = {}

    def prepare(self, pg_id: str, bundles: Iterable[tuple[int, Mapping[str, float]]]) -> bool:
        """Take these bundles out of the node's free resources, all of them or none. A bundle
        prepared already (a resent request) counts as taken."""
        wanted = [(int(i), normalize(r)) for i, r in bundles if (pg_id, int(i)) not in self.bundles]
        trial = self.node.snapshot()
        for _index, resources in wanted:
            if not trial.fits(resources):
                return False
            trial.acquire(resources)
            trial.take_gpus(resources.get("GPU", 0.0))
        for index, resources in wanted:
            gpus = resources.get("GPU", 0.0)
            gpu_ids = self.node.take_gpus(gpus)
            self.node.acquire(resources)
            pool = NodeResources(resources)
            # Indexed like the node's GPUs: a lease in the bundle gets the node's indexes.
            pool.gpu_free = [0.0] * len(self.node.gpu_free)
            for gpu in gpu_ids:
                pool.gpu_free[gpu] = min(gpus, 1.0)
            self.bundles[(pg_id, index)] = Bundle(pg_id, index, resources, gpu_ids, pool)
        return True

    def commit(self, pg_id: str, indexes: Iterable[int]) -> None:
        for index in indexes:
            bundle = self.bundles.get((pg_id, int(index)))
            if bundle is not None:
                bundle.committed = True

    def release(self, pg_id: str, indexes: Iterable[int] | None = None) -> list[Bundle]:
        """Give these bundles of the group (None: all) back to the node; the ones released."""
        chosen = set(indexes) if indexes is not None else None
        released = [
            b
            for key, b in self.bundles.items()
            if key[0] == pg_id and (chosen is None or key[1] in chosen)
        ]
        for bundle in released:
            del self.bundles[bundle.key]
            self.node.release(bundle.total)
            self.node.give_gpus(bundle.gpu_ids, bundle.total.get("GPU", 0.0))
        return released

    def keep_only(self, known: set[Key]) -> list[Bundle]:
        """After a GCS restart: release every bundle it does not know as committed."""
        stale = {key[0] for key in self.bundles if key not in known}
        released: list[Bundle] = []
        for pg_id in stale:
            indexes = [k[1] for k in self.bundles if k[0] == pg_id and k not in known]
            released += self.release(pg_id, indexes)
        return released

    def candidates(self, pg_id: str, index: int, request: Mapping[str, float]) -> list[Bundle]:
        """The committed bundles here a request for (pg_id, index) may use (index -1: any of
        the group's), those large enough for it."""
        if index >= 0:
            found = self.bundles.get((pg_id, index))
            chosen = [found] if found is not None else []
        else:
            chosen = [b for k, b in sorted(self.bundles.items()) if k[0] == pg_id]
        return [b for b in chosen if b.committed and b.pool.feasible(request)]

    def has_group(self, pg_id: str) -> bool:
        return any(key[0] == pg_id for key in self.bundles)

    def rows(self) -> list[dict]:
        return [
            {
                "placement_group_id": b.pg_id,
                "bundle_index": b.index,
                "resources": b.total,
                "available": b.pool.available,
                "committed": b.committed,
            }
            for b in self.bundles.values()
        ]


def bundle_node(
    nodes: list,
    bundles: list,
    index: int,
    request: Mapping[str, float],
    turn: int,
) -> tuple[str, str]:
    """Where a lease request into a placed group goes (nodes: [node id, raylet address] per
    bundle): (node id, address) of a node with a bundle large enough for it. For index -1
    with bundles on several nodes, turn picks among them, so leases spread over them."""
    indexes = [index] if index >= 0 else range(len(bundles))
    fitting = sorted(
        {(nodes[i][0], nodes[i][1]) for i in indexes if NodeResources(bundles[i]).feasible(request)}
    )
    if not fitting:
        raise errors.TaskUnschedulableError(
            f"the request {describe(request)} fits in no bundle of the placement group ({bundles})"
        )
    return fitting[turn % len(fitting)]
