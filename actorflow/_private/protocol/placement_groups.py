"""Messages to the control store's placement-group table (actor "placement_groups"), and the
replies callers unpack.

A placement group is a set of resource bundles reserved together on the cluster's nodes. Its
id is made by its creator, so a creation resent after a GCS restart is recognised.
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message

# States, as Ray names them.
PENDING, CREATED, RESCHEDULING, REMOVED = "PENDING", "CREATED", "RESCHEDULING", "REMOVED"
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@message("placement_groups", "create_placement_group")
class CreatePlacementGroup(NamedTuple):
    """Register a group and start placing it (answered with nil; a taken name is an error)."""

    pg_id: str
    name: str
    namespace: str
    bundles: list  # [{"CPU": 1.0}, ...]
    strategy: str  # one of STRATEGIES
    detached: bool
    job_id: str
    creator_actor: str = ""  # the actor that created it ("" for a driver or a task)


@message("placement_groups", "remove_placement_group")
class RemovePlacementGroup(NamedTuple):
    pg_id: str


@message("placement_groups", "wait_placement_group")
class WaitPlacementGroup(NamedTuple):
    """Answered with the group's table row once it is CREATED or REMOVED, or when timeout
    seconds have passed (None: no limit); an unknown group is an error."""

    pg_id: str
    timeout: float | None = None


@message("placement_groups", "placement_group_table")
class PlacementGroupTable(NamedTuple):
    """One group's row ({} for an unknown one), or every group's by id (pg_id "")."""

    pg_id: str


@message("placement_groups", "get_named_placement_group")
class GetNamedPlacementGroup(NamedTuple):
    """The row of the live group of that name in that namespace (nil if there is none)."""

    name: str
    namespace: str


@message("placement_groups", "locate_bundles")
class LocateBundles(NamedTuple):
    """Where a group's bundles are, once it is CREATED or REMOVED (answered with
    BundleLocations): for raylets routing leases into its bundles."""

    pg_id: str


class BundleLocations(NamedTuple):
    state: str
    nodes: list  # [[node_id, raylet address], ...] per bundle
    bundles: list  # the bundles' resources
