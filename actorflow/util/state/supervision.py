"""The supervision trees of a cluster, from the reports every supervisor keeps in the GCS's
key-value store (``actorflow.supervision``): behind ``actorflow list supervisors`` and the
dashboard's Supervision page."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from actorflow._private.cluster import inspection
from actorflow._private.protocol.gcs import SUPERVISION_NAMESPACE, KvGet, KvKeys

__all__ = ["supervisor_rows"]


async def collect_supervisors(ask: inspection.Ask, gcs_address: str) -> dict[str, Any]:
    keys = await ask(gcs_address, "gcs", "kv_keys", list(KvKeys(SUPERVISION_NAMESPACE, b"")))
    gets = [list(KvGet(SUPERVISION_NAMESPACE, key)) for key in keys]
    values, actors = await asyncio.gather(
        asyncio.gather(*[ask(gcs_address, "gcs", "kv_get", get) for get in gets]),
        ask(gcs_address, "actors", "list_actors", None),
    )
    reports = []
    for value in values:
        try:
            reports.append(json.loads(value))
        except (TypeError, ValueError):
            continue  # removed meanwhile
    return {"reports": reports, "actors": actors}


def supervisor_rows(address: str | None = None) -> list[dict[str, Any]]:
    """One row per supervisor, each tree depth first from its root: actor_id, name, label,
    namespace, strategy, intensity, period, state and death_cause (its actor's), parent_id
    (the supervisor it is a child of, "" for a root), depth, children (name, restart, state,
    restarts, actor_id, actor_name, is_supervisor, and actor_state, death_cause of its current
    actor), events (its latest log entries: seq, time, kind, child, detail), updated."""
    return supervisors_of(inspection.run(address, collect_supervisors))


def supervisors_of(collected: dict[str, Any]) -> list[dict[str, Any]]:
    actors = {a["actor_id"]: a for a in collected["actors"]}
    reports = {r["actor_id"]: r for r in collected["reports"]}
    parents = {
        child["actor_id"]: report["actor_id"]
        for report in reports.values()
        for child in report.get("children", [])
        if child.get("is_supervisor") and child.get("actor_id")
    }
    rows: dict[str, dict[str, Any]] = {}
    for actor_id, report in reports.items():
        actor = actors.get(actor_id, {})
        children = []
        for child in report.get("children", []):
            current = actors.get(child.get("actor_id") or "", {})
            children.append(
                dict(
                    child,
                    actor_state=current.get("state", ""),
                    death_cause=current.get("death_cause", "") or "",
                )
            )
        rows[actor_id] = dict(
            report,
            state=actor.get("state", ""),
            death_cause=actor.get("death_cause", "") or "",
            parent_id=parents.get(actor_id, "") if parents.get(actor_id) in reports else "",
            children=children,
        )
    ordered: list[dict[str, Any]] = []

    def visit(row: dict[str, Any], depth: int) -> None:
        ordered.append(dict(row, depth=depth))
        for child in row["children"]:
            nested = rows.get(child.get("actor_id") or "")
            if nested is not None and nested["parent_id"] == row["actor_id"]:
                visit(nested, depth + 1)

    for row in sorted(rows.values(), key=lambda r: (r["state"] == "DEAD", r["label"])):
        if not row["parent_id"]:
            visit(row, 0)
    return ordered
