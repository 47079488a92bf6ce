"""Placement groups as a process sees them (public as ``actorflow.util.placement_group``).

A ``PlacementGroup`` is a handle: its id and, once known, its bundles. It travels to tasks and
actors by value. Creating, removing and waiting are requests to the GCS's placement-group table
(control/placement_groups.py); ``ready()`` is a ref owned by this process that the table's
answer fills, so it works with ``get``, ``wait`` and ``await`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from actorflow._private import errors, ids, serialization
from actorflow._private.protocol import placement_groups as pgs
from actorflow._private.worker import context
from actorflow._private.worker.object_ref import ObjectRef

PUBLIC_MODULE = "actorflow.util.placement_group"
_EXAMPLE = '`[{"CPU": 1.0}, {"GPU": 1.0}]`'


class PlacementGroupID(str):
    """A placement group's id: a hex string, with Ray's ``hex()`` and ``is_nil()``."""

    def hex(self) -> str:  # type: ignore[override]
        return str(self)

    def binary(self) -> bytes:
        return bytes.fromhex(self)

    def is_nil(self) -> bool:
        return not self

    @staticmethod
    def nil() -> PlacementGroupID:
        return PlacementGroupID("")


class PlacementGroup:
    """A handle to a placement group."""

    def __init__(self, id: str, bundle_cache: list[dict] | None = None) -> None:
        self.id = PlacementGroupID(id)
        self.bundle_cache = bundle_cache

    @staticmethod
    def empty() -> PlacementGroup:
        return PlacementGroup("", [])

    @property
    def is_empty(self) -> bool:
        return not self.id

    @property
    def bundle_specs(self) -> list[dict]:
        """The bundles' resources, as given at creation."""
        if self.bundle_cache is None:
            row = _table(context.ensure_core(), self.id)
            if not row:
                raise ValueError(f"Placement group {self.id} does not exist")
            self.bundle_cache = [row["bundles"][i] for i in sorted(row["bundles"])]
        return self.bundle_cache

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """A ref that becomes ready (its value: this group) once the group is placed; works
        with ``get``, ``wait`` and ``await``. It raises if the group is removed first."""
        core = context.ensure_core()
        obj_id = ids.object_id(ids.new_task_id(), 1)
        core.ownership.return_ids_pending([obj_id])
        ref: ObjectRef[Any] = ObjectRef(obj_id, core.address)
        wire, _nested = serialization.serialize_named(self, "a placement group")
        core.runtime.call_soon(_fill_when_ready, core, self.id, obj_id, wire)
        return ref

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Wait up to timeout_seconds for the group to be placed: whether it is."""
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)):
            raise TypeError(f"timeout_seconds must be a number, got {timeout_seconds!r}")
        core = context.ensure_core()
        row = core.call_control(
            core.gcs_address,
            "placement_groups",
            "wait_placement_group",
            pgs.WaitPlacementGroup(self.id, float(max(timeout_seconds, 0))),
            timeout=max(timeout_seconds, 0) + 30,
        )
        if row["state"] == pgs.REMOVED:
            raise ValueError(f"Placement group {self.id} was removed")
        return bool(row["state"] == pgs.CREATED)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and self.id == other.id

    def __hash__(self) -> int:
        return hash(("placement_group", str(self.id)))

    def __reduce__(self) -> Any:
        return (PlacementGroup, (str(self.id), self.bundle_cache))

    def __repr__(self) -> str:
        return f"PlacementGroup(id={str(self.id)!r})"


PlacementGroup.__module__ = PUBLIC_MODULE
PlacementGroupID.__module__ = PUBLIC_MODULE


def _fill_when_ready(core: Any, pg_id: str, obj_id: bytes, wire: list) -> None:
    async def wait() -> None:
        try:
            row = await core.gcs_request(
                "placement_groups", "wait_placement_group", pgs.WaitPlacementGroup(pg_id, None)
            )
            if row["state"] == pgs.CREATED:
                value = wire
            else:
                value = serialization.serialize_error(
                    errors.ActorflowError(
                        f"placement group {pg_id} was removed before it was placed"
                    )
                )
        except Exception as exc:
            value = serialization.serialize_error(exc)
        if core.objects.is_known(obj_id):  # nobody holds the ref any more: nothing to fill
            core.set_object(obj_id, value)

    core.runtime.loop.create_task(wait())


def validate(bundles: Any, strategy: Any, lifetime: Any) -> list[dict[str, float]]:
    """Ray's checks on placement_group()'s arguments; the bundles as floats."""
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError(
            f"Bundles must be a non-empty list of resource dictionaries. For example: "
            f"{_EXAMPLE}. Got empty list instead."
        )
    checked: list[dict[str, float]] = []
    for index, bundle in enumerate(bundles):
        if (
            not isinstance(bundle, Mapping)
            or not all(isinstance(k, str) and k for k in bundle)
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in bundle.values()
            )
        ):
            raise ValueError(
                f"Bundles must be a non-empty list of resource dictionaries. For example: "
                f"{_EXAMPLE}. Bundle {index} is {bundle!r}."
            )
        if any(v < 0 or math.isnan(v) or math.isinf(v) for v in bundle.values()):
            raise ValueError(
                f"Bundles cannot have negative (or non-finite) resource quantities: bundle "
                f"{index} is {dict(bundle)}. Bundles: {bundles}"
            )
        if not bundle or all(v == 0 for v in bundle.values()):
            raise ValueError(
                f"Bundles cannot be an empty dictionary or resources with only 0 values. "
                f"Bundles: {bundles}"
            )
        checked.append({k: float(v) for k, v in bundle.items() if v > 0})
    if strategy not in pgs.STRATEGIES:
        raise ValueError(
            f"Invalid placement group strategy {strategy}. Supported strategies are: "
            f"{set(pgs.STRATEGIES)}."
        )
    if lifetime not in (None, "detached"):
        raise ValueError(
            f"Placement group `lifetime` argument must be either `None` or 'detached'. "
            f"Got {lifetime}."
        )
    return checked


def create(bundles: Any, strategy: str, name: str, lifetime: Any) -> PlacementGroup:
    checked = validate(bundles, strategy, lifetime)
    if not isinstance(name, str):
        raise TypeError(f"a placement group name must be a string, got {name!r}")
    core = context.ensure_core()
    pg_id = ids.new_id(14).hex()
    message = pgs.CreatePlacementGroup(
        pg_id,
        name,
        core.namespace,
        checked,
        strategy,
        lifetime == "detached",
        core.job_id,
        core.extensions.get("actor_id") or "",
    )
    if core.on_loop_thread():  # not waited for: a taken name shows when it is used
        core.gcs_request("placement_groups", "create_placement_group", message)
    else:
        core.call_control(core.gcs_address, "placement_groups", "create_placement_group", message)
    return PlacementGroup(pg_id, checked)


def remove(group: Any) -> None:
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"remove_placement_group() takes a PlacementGroup, got {group!r}")
    core = context.ensure_core()
    message = pgs.RemovePlacementGroup(group.id)
    if core.on_loop_thread():
        core.gcs_request("placement_groups", "remove_placement_group", message)
    else:
        core.call_control(core.gcs_address, "placement_groups", "remove_placement_group", message)


def by_name(name: str) -> PlacementGroup:
    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    core = context.ensure_core()
    row = core.call_control(
        core.gcs_address,
        "placement_groups",
        "get_named_placement_group",
        pgs.GetNamedPlacementGroup(name, core.namespace),
    )
    if row is None:
        raise ValueError(f"Failed to look up placement group with name: {name}")
    return PlacementGroup(row["placement_group_id"], _bundles_of(row))


def table(group: Any = None) -> dict:
    core = context.ensure_core()
    if group is None:
        return _table(core, "")
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"placement_group_table() takes a PlacementGroup or None, got {group!r}")
    return _table(core, group.id)


def _table(core: Any, pg_id: str) -> dict:
    found = core.call_control(
        core.gcs_address,
        "placement_groups",
        "placement_group_table",
        pgs.PlacementGroupTable(pg_id),
    )
    if pg_id:
        return _row(found) if found else {}
    return {key: _row(row) for key, row in found.items()}


def _row(row: dict) -> dict:
    """msgpack keys of int maps come back as ints: as Ray's table has them."""
    row = dict(row)
    row["bundles"] = {int(i): b for i, b in row["bundles"].items()}
    row["bundles_to_node_id"] = {int(i): n for i, n in row["bundles_to_node_id"].items()}
    return row


def _bundles_of(row: dict) -> list[dict]:
    bundles = _row(row)["bundles"]
    return [bundles[i] for i in sorted(bundles)]


def current() -> PlacementGroup | None:
    wire = context.current_placement_group()
    if wire is None:
        return None
    return PlacementGroup(wire[1], [dict(b) for b in wire[4]])
