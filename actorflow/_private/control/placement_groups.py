"""The GCS's placement-group table: groups of resource bundles reserved together, as in Ray.

A group is placed by bundle_policy.py over the nodes' reported free resources, then reserved in
two phases: every chosen raylet prepares its bundles (takes them out of its free resources, all
or none), and only when all have, each commits them. A prepare that fails (the node's report was
stale) cancels the prepared ones and the group is tried again later: when a node joins or
reports, when a group is removed, and every ``placement_group_retry_seconds``. A group that
does not fit now stays PENDING; one that could never fit on the current nodes says so in the
log once and stays PENDING too (a node may join).

A group is removed when asked, when its job ends, or when the actor that created it dies,
unless it is detached. Removal gives the bundles back and kills the actors placed in it. When a
node holding bundles dies, the group goes RESCHEDULING and those bundles are placed again.
The table is written through to the GCS's storage, so a restarted GCS finds its groups.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any

from actorflow._private.config import Config
from actorflow._private.control import bundle_policy
from actorflow._private.node.resources import describe
from actorflow._private.protocol import placement_groups as pgs
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.placement_groups import (
    CREATED,
    PENDING,
    REMOVED,
    RESCHEDULING,
    BundleLocations,
)
from actorflow._private.protocol.raylet import (
    CancelBundles,
    CommitBundles,
    PrepareBundles,
    ReclaimBundles,
)
from actorflow._private.runtime import Call, Runtime

logger = logging.getLogger("actorflow.gcs")


@dataclass(eq=False)
class GroupRecord:
    pg_id: str
    name: str
    namespace: str
    bundles: list
    strategy: str
    detached: bool
    job_id: str
    creator_actor: str = ""
    state: str = PENDING
    bundle_nodes: list = field(default_factory=list)  # node id per bundle ("" unplaced)
    created_at: float = field(default_factory=time.time)
    placed_at: float = 0.0
    attempts: int = 0
    scheduling_state: str = "QUEUED"
    warned: bool = False
    waiters: list = field(default_factory=list)

    def to_table(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "waiters"}

    def row(self) -> dict[str, Any]:
        """Ray's placement_group_table row."""
        latency = (self.placed_at - self.created_at) * 1000 if self.placed_at else 0.0
        return {
            "placement_group_id": self.pg_id,
            "name": self.name,
            "bundles": {i: dict(b) for i, b in enumerate(self.bundles)},
            "bundles_to_node_id": dict(enumerate(self.bundle_nodes)),
            "strategy": self.strategy,
            "state": self.state,
            "stats": {
                "end_to_end_creation_latency_ms": latency,
                "scheduling_latency_ms": latency,
                "scheduling_attempt": self.attempts,
                "highest_retry_delay_ms": 0.0,
                "scheduling_state": self.scheduling_state,
            },
            "namespace": self.namespace,
            "job_id": self.job_id,
            "lifetime": "detached" if self.detached else "non_detached",
        }


class PlacementGroupManager:
    def __init__(self, runtime: Runtime, gcs: Any, actors: Any, config: Config) -> None:
        self.runtime = runtime
        self.gcs = gcs
        self.actors = actors  # the actor manager: kills the actors of a removed group
        self.config = config
        self.groups: dict[str, GroupRecord] = {}
        self.names: dict[tuple[str, str], str] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task | None = None
        gcs.placement_groups = self

    def start(self) -> None:
        self._loop = self.runtime.loop.create_task(self._schedule_forever())

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()

    # -- persistence ----------------------------------------------------------------------------

    def _save(self, record: GroupRecord) -> None:
        self.gcs.storage.put("placement_groups", record.pg_id, record.to_table())

    def load(self, tables: dict[str, dict[str, Any]]) -> None:
        for pg_id, row in tables.get("placement_groups", {}).items():
            record = GroupRecord(**row)
            self.groups[pg_id] = record
            if record.name and record.state != REMOVED:
                self.names[(record.namespace, record.name)] = pg_id

    async def recover(self) -> None:
        """After a reload: each node keeps only the committed bundles the table knows there
        (a reservation the previous GCS left half done is given back and made again)."""
        known: dict[str, list[list]] = {}
        for record in self.groups.values():
            if record.state in (CREATED, RESCHEDULING):
                for index, node_id in enumerate(record.bundle_nodes):
                    if node_id:
                        known.setdefault(node_id, []).append([record.pg_id, index])
        nodes = [n for n in self.gcs.nodes.values() if n["alive"]]
        await asyncio.gather(
            *(
                self.runtime.ask(n["address"], ReclaimBundles(known.get(n["node_id"], [])))
                for n in nodes
            ),
            return_exceptions=True,
        )
        self.kick()

    # -- requests -------------------------------------------------------------------------------

    def handle_create_placement_group(self, payload: list, call: Call) -> None:
        asked = decode(pgs.CreatePlacementGroup, payload)
        if asked.pg_id in self.groups:  # sent again after a GCS restart
            return
        key = (asked.namespace, asked.name)
        if asked.name and key in self.names:
            raise ValueError(
                f"Failed to create placement group: the name {asked.name!r} is already taken "
                f"in namespace {asked.namespace!r}"
            )
        record = GroupRecord(
            asked.pg_id,
            asked.name,
            asked.namespace,
            [dict(b) for b in asked.bundles],
            asked.strategy,
            bool(asked.detached),
            asked.job_id,
            asked.creator_actor,
            bundle_nodes=[""] * len(asked.bundles),
        )
        self.groups[record.pg_id] = record
        if asked.name:
            self.names[key] = record.pg_id
        self._save(record)
        self.kick()

    def handle_remove_placement_group(self, payload: list, call: Call | None) -> None:
        pg_id = decode(pgs.RemovePlacementGroup, payload).pg_id
        record = self.groups.get(pg_id)
        if record is None:
            raise ValueError(f"Placement group {pg_id} does not exist")
        self.remove(record, "it was removed with remove_placement_group()")

    async def handle_wait_placement_group(self, payload: list, call: Call) -> dict:
        pg_id, timeout = decode(pgs.WaitPlacementGroup, payload)
        record = self._known(pg_id)
        if record.state not in (CREATED, REMOVED):
            waiter = self.runtime.loop.create_future()
            record.waiters.append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except asyncio.TimeoutError:
                pass
        return record.row()

    async def handle_locate_bundles(self, payload: list, call: Call) -> BundleLocations:
        return await self.locate(decode(pgs.LocateBundles, payload).pg_id)

    async def locate(self, pg_id: str) -> BundleLocations:
        """Where the group's bundles are, once it is placed (or removed)."""
        record = self._known(pg_id)
        while record.state not in (CREATED, REMOVED):
            waiter = self.runtime.loop.create_future()
            record.waiters.append(waiter)
            await waiter
        nodes = [
            [node_id, self.gcs.nodes.get(node_id, {}).get("address", "")]
            for node_id in record.bundle_nodes
        ]
        return BundleLocations(record.state, nodes, record.bundles)

    def handle_placement_group_table(self, payload: list, call: Call) -> dict:
        pg_id = decode(pgs.PlacementGroupTable, payload).pg_id
        if pg_id:
            record = self.groups.get(pg_id)
            return record.row() if record is not None else {}
        return {r.pg_id: r.row() for r in self.groups.values()}

    def handle_get_named_placement_group(self, payload: list, call: Call) -> dict | None:
        name, namespace = decode(pgs.GetNamedPlacementGroup, payload)
        pg_id = self.names.get((namespace, name))
        return self.groups[pg_id].row() if pg_id is not None else None

    def _known(self, pg_id: str) -> GroupRecord:
        record = self.groups.get(pg_id)
        if record is None:
            raise ValueError(f"Placement group {pg_id} does not exist")
        return record

    # -- removal --------------------------------------------------------------------------------

    def remove(self, record: GroupRecord, why: str) -> None:
        if record.state == REMOVED:
            return
        holding = {n for n in record.bundle_nodes if n}
        record.state = REMOVED
        record.scheduling_state = "REMOVED"
        record.bundle_nodes = [""] * len(record.bundles)
        if self.names.get((record.namespace, record.name)) == record.pg_id:
            del self.names[(record.namespace, record.name)]
        self._save(record)
        self._wake_waiters(record)
        logger.info("placement group %s removed: %s", record.pg_id, why)
        self.actors.placement_group_removed(record.pg_id, why)
        for node_id in holding:
            node = self.gcs.nodes.get(node_id)
            if node is not None and node["alive"]:
                self.runtime.tell(node["address"], CancelBundles(record.pg_id, None, f"{why}"))
        self.kick()  # what it held may fit pending groups

    def job_finished(self, job_id: str) -> None:
        for record in list(self.groups.values()):
            if record.job_id == job_id and not record.detached:
                self.remove(record, f"its job {job_id} ended")

    def actor_dead(self, actor_id: str) -> None:
        for record in list(self.groups.values()):
            if record.creator_actor == actor_id and not record.detached:
                self.remove(record, f"the actor {actor_id} that created it died")

    def node_died(self, node_id: str) -> None:
        """Bundles on a dead node are placed again (the group is RESCHEDULING meanwhile)."""
        for record in self.groups.values():
            if record.state in (CREATED, RESCHEDULING) and node_id in record.bundle_nodes:
                record.bundle_nodes = ["" if n == node_id else n for n in record.bundle_nodes]
                record.state = RESCHEDULING
                record.scheduling_state = "QUEUED"
                self._save(record)
                logger.warning(
                    "placement group %s: node %s holding bundles died; placing them again",
                    record.pg_id,
                    node_id,
                )
        self.kick()

    def _wake_waiters(self, record: GroupRecord) -> None:
        waiters, record.waiters = record.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- placing --------------------------------------------------------------------------------

    def kick(self) -> None:
        """Something changed (a group, a node, free resources): try pending groups again."""
        self._wake.set()

    def has_pending(self) -> bool:
        return any(r.state in (PENDING, RESCHEDULING) for r in self.groups.values())

    async def _schedule_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.placement_group_retry_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            for record in list(self.groups.values()):
                if record.state in (PENDING, RESCHEDULING):
                    try:
                        await self._try_place(record)
                    except Exception:
                        logger.exception("placing placement group %s failed", record.pg_id)

    async def _try_place(self, record: GroupRecord) -> None:
        alive = {n["node_id"]: n for n in self.gcs.nodes.values() if n["alive"]}
        placed = {i: n for i, n in enumerate(record.bundle_nodes) if n and n in alive}
        # New bundles go to nodes that are not draining (those that are are leaving).
        free = {node_id: n["available"] for node_id, n in alive.items() if not n.get("draining")}
        chosen = bundle_policy.place(record.bundles, record.strategy, free, placed)
        if chosen is None:
            totals = {node_id: n["resources"] for node_id, n in alive.items()}
            if not bundle_policy.feasible(record.bundles, record.strategy, totals):
                record.scheduling_state = "INFEASIBLE"
                if not record.warned:
                    record.warned = True
                    logger.warning(
                        "placement group %s (%s %s) cannot be placed on the cluster's nodes "
                        "as they are; it stays pending until nodes that can hold it join",
                        record.pg_id,
                        record.strategy,
                        [describe(b) for b in record.bundles],
                    )
            else:
                record.scheduling_state = "NO_RESOURCES"
            return
        record.attempts += 1
        record.scheduling_state = "SCHEDULING_STARTED"
        by_node: dict[str, list[int]] = {}
        for index, node_id in chosen.items():
            by_node.setdefault(node_id, []).append(index)
        if await self._reserve(record, by_node, alive):
            for index, node_id in chosen.items():
                record.bundle_nodes[index] = node_id
                reported = alive[node_id]["available"]
                for k, v in record.bundles[index].items():  # until its next heartbeat counts it
                    reported[k] = reported.get(k, 0.0) - v
            record.state = CREATED
            record.scheduling_state = "FINISHED"
            record.placed_at = record.placed_at or time.time()
            self._save(record)
            self._wake_waiters(record)
        elif record.state != REMOVED:
            record.scheduling_state = "FAILED_TO_COMMIT_RESOURCES"

    async def _reserve(
        self, record: GroupRecord, by_node: dict[str, list[int]], alive: dict[str, dict]
    ) -> bool:
        """Two phases: every node prepares its bundles, then each commits them; if any
        prepare fails, the prepared ones are cancelled."""
        order = sorted(by_node)
        timeout = self.config.placement_group_prepare_timeout
        answers = await asyncio.gather(
            *(
                asyncio.wait_for(
                    self.runtime.ask(
                        alive[n]["address"],
                        PrepareBundles(record.pg_id, [[i, record.bundles[i]] for i in by_node[n]]),
                    ),
                    timeout,
                )
                for n in order
            ),
            return_exceptions=True,
        )
        prepared = [n for n, ok in zip(order, answers, strict=True) if ok is True]
        if len(prepared) < len(order) or record.state == REMOVED:
            for n in prepared:
                self.runtime.tell(alive[n]["address"], CancelBundles(record.pg_id, by_node[n]))
            return False
        commits = await asyncio.gather(
            *(
                self.runtime.ask(alive[n]["address"], CommitBundles(record.pg_id, by_node[n]))
                for n in order
            ),
            return_exceptions=True,
        )
        failed = [
            n for n, answer in zip(order, commits, strict=True) if isinstance(answer, BaseException)
        ]
        if failed or record.state == REMOVED:
            # A node died between the phases (it is declared dead soon): give the rest back.
            for n in order:
                self.runtime.tell(alive[n]["address"], CancelBundles(record.pg_id, by_node[n]))
            return False
        return True
