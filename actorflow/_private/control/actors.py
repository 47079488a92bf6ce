"""The GCS's actor table: creation, names, restarts, death, and state for callers.

An actor is created on a dedicated worker leased from a raylet; the GCS runs its constructor there
(``become_actor``) and publishes its address. Callers then talk to the actor directly and come
back here only to learn a new state (after a restart, or its death). A caller waits for a state
newer than the one it knows with ``wait_actor`` (a long poll).

States: PENDING (being created), ALIVE, RESTARTING, DEAD (with a cause that callers see).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.config import Config
from actorflow._private.control.gcs import is_reachable
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.node.scheduling import NodeView, Scheduler
from actorflow._private.protocol import actors
from actorflow._private.protocol.actors import ActorCreated, ActorState, NamedActor
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.placement_groups import REMOVED
from actorflow._private.protocol.raylet import ReclaimOrphanedLeases, RequestLease, ReturnLease
from actorflow._private.protocol.worker import BecomeActor
from actorflow._private.runtime import Call, Runtime

logger = logging.getLogger("actorflow.gcs")

PENDING, ALIVE, RESTARTING, DEAD = "PENDING", "ALIVE", "RESTARTING", "DEAD"
# Why an actor went RESTARTING or DEAD (ActorEvent.kind): for supervisors to decide on.
NORMAL, KILLED, CRASHED, START_FAILED = "normal", "killed", "crashed", "start_failed"
NODE_DIED, OWNER_DIED = "node_died", "owner_died"


@dataclass(eq=False)
class ActorRecord:
    actor_id: str
    spec: dict[str, Any]
    state: str = PENDING
    address: str = ""
    worker_id: str = ""
    lease_id: str = ""
    raylet_address: str = ""
    node_id: str = ""
    restarts: int = 0
    version: int = 0
    death_cause: str = ""
    death_error: list | None = None  # serialized error (the constructor's) when it has one
    no_restart: bool = False
    waiters: list = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    history: list = field(default_factory=list)  # recent state changes, for watchers

    def event(self, cause: str = "", kind: str = "") -> dict[str, Any]:
        return {
            "actor_id": self.actor_id,
            "version": self.version,
            "state": self.state,
            "restarts": self.restarts,
            "cause": cause,
            "kind": kind,
            "node_id": self.node_id,
            "name": self.spec.get("name") or "",
            "time": time.time(),
        }

    @property
    def name_key(self) -> tuple[str, str] | None:
        name = self.spec.get("name")
        return (self.spec.get("namespace") or "", name) if name else None

    def to_table(self) -> dict[str, Any]:
        """What is stored (gcs_storage.py): everything but the waiting callers."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "waiters"}
        return row

    def view(self) -> ActorState:
        return ActorState(
            self.version, self.state, self.address, self.death_cause, self.death_error
        )


class ActorManager:
    def __init__(self, runtime: Runtime, gcs: Any, config: Config) -> None:
        self.runtime = runtime
        self.config = config
        self.gcs = gcs
        self.actors: dict[str, ActorRecord] = {}
        self.names: dict[tuple[str, str], str] = {}
        self._by_worker: dict[str, ActorRecord] = {}
        self._owned_by: dict[Any, set[str]] = {}
        # owner actor id -> actors it created that outlived its process (_owner_process_gone)
        self._kept_for: dict[str, set[str]] = {}
        self.scheduler = Scheduler()
        gcs.actor_manager = self

    # -- persistence ----------------------------------------------------------------------------

    def _save(self, record: ActorRecord) -> None:
        self.gcs.storage.put("actors", record.actor_id, record.to_table())

    def load(self, tables: dict[str, dict[str, Any]]) -> None:
        for actor_id, row in tables.get("actors", {}).items():
            record = ActorRecord(**{k: v for k, v in row.items() if k != "waiters"})
            self.actors[actor_id] = record
            if record.name_key is not None and record.state != DEAD:
                self.names[record.name_key] = actor_id

    async def recover(self) -> None:
        """After a reload: actors whose process still answers are watched again (nothing
        restarts them); the others are handled as if their worker had just died; actors whose
        creation was under way are created again; non-detached actors of a gone owner die.
        Every process is pinged at once."""
        live = [r for r in self.actors.values() if r.state != DEAD]
        owners = {r.spec.get("owner", "") for r in live if r.spec.get("lifetime") != "detached"} - {
            ""
        }
        addresses = sorted(owners | {r.address for r in live if r.state == ALIVE} - {""})
        answers = await asyncio.gather(*(is_reachable(self.runtime, a) for a in addresses))
        reachable = {a for a, ok in zip(addresses, answers, strict=True) if ok}
        for owner in owners & reachable:
            self.runtime.on_peer_lost(owner, functools.partial(self.owner_gone_by_address, owner))
        for record in live:
            owner = record.spec.get("owner", "")
            detached = record.spec.get("lifetime") == "detached"
            if owner and not detached and owner not in reachable:
                self._owner_process_gone(record)
            elif record.state == ALIVE and record.worker_id:
                self._by_worker[record.worker_id] = record
                if record.address in reachable:
                    self._watch_worker(record, record.worker_id, record.address)
                else:
                    self._worker_lost(
                        record,
                        record.worker_id,
                        None,
                        how="its process was gone when the GCS restarted",
                    )
            elif record.state in (PENDING, RESTARTING):
                self.runtime.loop.create_task(self._create(record))
        await self._reclaim_orphaned_leases()

    async def _reclaim_orphaned_leases(self) -> None:
        """Workers leased by the previous GCS for actors it had not finished creating (they
        are created again) end: each node keeps only the actor leases the tables know."""
        known: dict[str, list[str]] = {}
        for record in self.actors.values():
            if record.state == ALIVE and record.lease_id:
                known.setdefault(record.raylet_address, []).append(record.lease_id)
        nodes = [n["address"] for n in self.gcs.nodes.values() if n["alive"]]
        answers = await asyncio.gather(
            *(self.runtime.ask(a, ReclaimOrphanedLeases(known.get(a, []))) for a in nodes),
            return_exceptions=True,
        )
        reclaimed = sum(a for a in answers if isinstance(a, int))
        if reclaimed:
            logger.warning(
                "ended %d actor workers the previous GCS had leased for actors it "
                "was still creating",
                reclaimed,
            )

    def _watch_worker(self, record: ActorRecord, worker_id: str, address: str) -> None:
        # The raylet reports the exit code; the lost connection is the fallback if it cannot.
        def lost() -> None:
            self.runtime.loop.call_later(0.5, self._worker_lost, record, worker_id, None)

        self.runtime.on_peer_lost(address, lost)

    # -- creation -------------------------------------------------------------------------------

    def handle_create_actor(self, payload: list, call: Call) -> ActorCreated:
        """Register an actor and start creating it."""
        spec = decode(actors.CreateActor, payload).spec
        known = self.actors.get(spec["actor_id"])
        if known is not None:  # sent again after a GCS restart: it was registered already
            return ActorCreated(known.actor_id, False, known.spec["meta"])
        key = (spec.get("namespace") or "", spec["name"]) if spec.get("name") else None
        if key is not None:
            existing_id = self.names.get(key)
            existing = self.actors.get(existing_id) if existing_id else None
            if existing is not None and existing.state != DEAD:
                if spec.get("get_if_exists"):
                    return ActorCreated(existing.actor_id, True, existing.spec["meta"])
                raise ValueError(
                    f"the actor name {spec['name']!r} is already taken in namespace "
                    f"{key[0]!r}; pick another name, or pass get_if_exists=True to "
                    f"get the existing actor"
                )
        record = ActorRecord(spec["actor_id"], spec)
        self.actors[record.actor_id] = record
        if key is not None:
            self.names[key] = record.actor_id
        if spec.get("lifetime") != "detached" and call.conn is not None:
            owned = self._owned_by.get(call.conn)
            if owned is None:
                owned = self._owned_by[call.conn] = set()
                conn = call.conn
                call.on_caller_lost(lambda: self._owner_gone(conn))
            owned.add(record.actor_id)
        self._save(record)
        self.runtime.loop.create_task(self._create(record))
        return ActorCreated(record.actor_id, False, spec["meta"])

    def _owner_gone(self, conn: Any) -> None:
        for actor_id in self._owned_by.pop(conn, set()):
            record = self.actors.get(actor_id)
            if record is not None and record.state != DEAD:
                self._owner_process_gone(record)

    def owner_gone_by_address(self, owner_address: str) -> None:
        for record in list(self.actors.values()):
            if (
                record.spec.get("owner") == owner_address
                and record.state != DEAD
                and record.spec.get("lifetime") != "detached"
            ):
                self._owner_process_gone(record)

    def _owner_process_gone(self, record: ActorRecord) -> None:
        """The process that created the actor exited: the actor dies with it, unless it was
        made to share the fate of the actor that created it (survives_owner_restart): then it
        lives on while that actor restarts, and dies when it is dead for good."""
        owner_actor_id = record.spec.get("owner_actor_id") or ""
        survives = record.spec.get("survives_owner_restart")
        owner = self.actors.get(owner_actor_id) if survives else None
        if owner is None:
            self._kill(record, "its owner (the process that created it) exited", OWNER_DIED)
        elif owner.state == DEAD:
            self._kill(record, f"its owner, actor {owner_actor_id}, is dead", OWNER_DIED)
        else:
            self._kept_for.setdefault(owner_actor_id, set()).add(record.actor_id)

    async def _create(self, record: ActorRecord) -> None:
        spec = record.spec
        strategy = spec.get("strategy")
        try:
            node = await self._pick_node(spec)
            if record.state == DEAD:  # killed (or its group removed) while it waited
                return
            job_id = spec.get("job_id", "")
            job = self.gcs.jobs.get(job_id)
            env = spec.get("runtime_env")
            answer = await self.runtime.ask(
                node.address,
                RequestLease(spec["resources"], True, job_id, spec.get("strategy"), True, job, env),
            )
            in_group = strategy if isinstance(strategy, list) and strategy[:1] == ["pg"] else None
            for _ in range(8):
                # That node cannot fit it at all, or it drains, or a node with room joined
                # while it waited: try where it says.
                if answer[0] != "spillback":
                    break
                node = NodeView(answer[2], answer[1], {})
                answer = await self.runtime.ask(
                    answer[1],
                    RequestLease(spec["resources"], True, job_id, in_group, True, job, env),
                )
            if answer[0] == "spillback":
                raise errors.ActorflowError("the nodes kept sending its lease request on")
        except errors.TaskUnschedulableError as exc:
            if record.state == DEAD:
                return
            self._set_dead(
                record,
                str(exc),
                serialization.serialize_error(errors.ActorUnschedulableError(str(exc))),
                START_FAILED,
            )
            return
        except errors.RuntimeEnvSetupError as exc:
            # Its calls fail with this error (as in Ray), not a bare ActorDiedError.
            record.no_restart = True
            cause = f"its runtime_env could not be set up: {exc}"
            self._set_dead(record, cause, serialization.serialize_error(exc), START_FAILED)
            return
        except Exception as exc:
            if record.state != DEAD:
                self._set_dead(
                    record, f"no worker could be leased for it: {exc}", None, START_FAILED
                )
            return
        lease_id, worker_id, address, gpu_ids = answer
        raylet = node.address
        if record.state == DEAD:  # killed while waiting for a worker
            self.runtime.tell(raylet, ReturnLease(lease_id, True))
            return
        record.worker_id, record.lease_id, record.raylet_address = worker_id, lease_id, raylet
        record.node_id = node.node_id
        self._by_worker[worker_id] = record
        self._save(record)
        self._watch_worker(record, worker_id, address)
        try:
            status, payload, _seconds, _contained, _started = await self.runtime.ask(
                address,
                BecomeActor(record.actor_id, spec, record.restarts, self.runtime.address, gpu_ids),
            )
        except PeerUnreachableError:
            return  # _worker_lost handles it
        if status != 0:  # the constructor raised: the actor is dead for good, as in Ray
            record.no_restart = True
            self._set_dead(record, "its constructor raised an error", payload, START_FAILED)
            self._end_worker(record)
            return
        if record.state == DEAD:
            self._end_worker(record)
            return
        record.address = address
        self._publish(record, ALIVE)

    async def _pick_node(self, spec: dict) -> NodeView:
        """Where to create it: its strategy, else the creator's node if it fits now, else a
        node with room (scheduling.py). In a placement group: the node of its bundle, once
        the group is placed."""
        strategy = spec.get("strategy")
        if isinstance(strategy, list) and strategy and strategy[0] == "pg":
            return await self._bundle_node(str(strategy[1]), int(strategy[2]), spec["resources"])
        nodes = [
            NodeView(
                n["node_id"],
                n["address"],
                n["resources"],
                dict(n["available"]),
                self.gcs.schedulable(n),
            )
            for n in self.gcs.nodes.values()
        ]
        try:
            node = self.scheduler.pick(
                nodes, spec["resources"], spec.get("strategy"), spec.get("node_id", "")
            )
        except errors.TaskUnschedulableError:
            self.gcs.infeasible_here.add(spec["resources"], "actor")
            raise
        reported = self.gcs.nodes[node.node_id]["available"]
        for k, v in spec["resources"].items():  # until its next heartbeat counts it
            reported[k] = reported.get(k, 0.0) - v
        return node

    async def _bundle_node(self, pg_id: str, index: int, request: dict) -> NodeView:
        state, nodes, bundles = await self.gcs.placement_groups.locate(pg_id)
        if state == REMOVED:
            raise errors.TaskUnschedulableError(
                f"its placement group {pg_id} was removed before the actor could be placed"
            )
        indexes = [index] if index >= 0 else list(range(len(bundles)))
        for i in indexes:  # the raylet picks the bundle on that node
            if all(bundles[i].get(k, 0.0) + 1e-9 >= v for k, v in request.items()):
                node_id, address = nodes[i]
                return NodeView(node_id, address, dict(bundles[i]))
        raise errors.TaskUnschedulableError(
            f"the actor's request {request} fits in no bundle of placement group {pg_id}"
        )

    def placement_group_removed(self, pg_id: str, why: str) -> None:
        """A group is removed: the actors placed in it die (and are not restarted)."""
        for record in list(self.actors.values()):
            strategy = record.spec.get("strategy")
            if (
                record.state != DEAD
                and isinstance(strategy, list)
                and strategy[:1] == ["pg"]
                and strategy[1] == pg_id
            ):
                self._kill(record, f"its placement group {pg_id} was removed ({why})", KILLED)

    def node_died(self, node_id: str, address: str, cause: str) -> None:
        """Actors on a dead node restart elsewhere if they have restarts left."""
        for record in list(self.actors.values()):
            if record.node_id == node_id and record.state != DEAD and record.worker_id:
                self._worker_lost(
                    record,
                    record.worker_id,
                    None,
                    how=f"its node {node_id} ({address}) died: {cause}",
                    kind=NODE_DIED,
                )

    # -- death and restart ----------------------------------------------------------------------

    def handle_actor_worker_exited(self, payload: list, call: Call | None) -> None:
        """From a raylet: an actor's worker process exited with this code."""
        worker_id, exit_code = decode(actors.ActorWorkerExited, payload)
        record = self._by_worker.get(worker_id)
        if record is not None:
            self._worker_lost(record, worker_id, exit_code)

    def _worker_lost(
        self,
        record: ActorRecord,
        worker_id: str,
        exit_code: int | None,
        how: str = "",
        kind: str = CRASHED,
    ) -> None:
        if record.worker_id != worker_id or self._by_worker.get(worker_id) is not record:
            return
        del self._by_worker[worker_id]
        if record.state == DEAD:
            return
        how = how or (
            f"its worker process exited with code {exit_code}"
            if exit_code is not None
            else "its worker process died"
        )
        max_restarts = record.spec.get("max_restarts", 0)
        if not record.no_restart and (max_restarts == -1 or record.restarts < max_restarts):
            record.restarts += 1
            record.address = ""
            logger.info("actor %s: %s; restarting (%d)", record.actor_id, how, record.restarts)
            self._publish(record, RESTARTING, how, kind)
            self.runtime.loop.create_task(self._create(record))
        else:
            reason = how if max_restarts == 0 else f"{how} and it has no restarts left"
            self._set_dead(record, reason, None, kind)

    def handle_actor_exited(self, payload: list, call: Call | None) -> None:
        """From the actor itself: exit_actor() or a graceful terminate."""
        actor_id, reason = decode(actors.ActorExited, payload)
        record = self.actors.get(actor_id)
        if record is not None and record.state != DEAD:
            record.no_restart = True
            self._set_dead(record, reason, None, NORMAL)

    def handle_kill_actor(self, payload: list, call: Call | None) -> None:
        actor_id, no_restart, reason = decode(actors.KillActor, payload)
        record = self.actors.get(actor_id)
        if record is None:
            raise ValueError(f"no actor with id {actor_id}")
        if record.state == DEAD:
            return
        if no_restart:
            self._kill(record, reason, KILLED)
        elif record.worker_id:
            # Ends the process; the actor restarts if it has restarts left.
            self.runtime.tell(record.raylet_address, ReturnLease(record.lease_id, True))

    def _kill(self, record: ActorRecord, reason: str, kind: str) -> None:
        record.no_restart = True
        self._set_dead(record, reason, None, kind)
        self._end_worker(record)

    def _end_worker(self, record: ActorRecord) -> None:
        if record.lease_id:
            self.runtime.tell(record.raylet_address, ReturnLease(record.lease_id, True))

    def _set_dead(
        self, record: ActorRecord, cause: str, error_wire: list | None, kind: str
    ) -> None:
        record.death_cause = cause
        record.death_error = error_wire
        record.address = ""
        key = record.name_key
        if key is not None and self.names.get(key) == record.actor_id:
            del self.names[key]
        self._publish(record, DEAD, cause, kind)
        if self.gcs.placement_groups is not None:  # the groups it created go with it
            self.gcs.placement_groups.actor_dead(record.actor_id)
        self.gcs.drop_actor_state(record.actor_id)
        for kept_id in sorted(self._kept_for.pop(record.actor_id, ())):
            kept = self.actors.get(kept_id)
            if kept is not None and kept.state != DEAD:
                self._kill(kept, f"its owner, actor {record.actor_id}, died: {cause}", OWNER_DIED)

    def _publish(self, record: ActorRecord, state: str, cause: str = "", kind: str = "") -> None:
        record.state = state
        record.version += 1
        record.history.append(record.event(cause, kind))
        del record.history[: -self.config.actor_history]
        self._save(record)
        waiters, record.waiters = record.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(record.view())

    # -- queries --------------------------------------------------------------------------------

    async def handle_wait_actor(self, payload: list, call: Call) -> ActorState:
        """Answer with the actor's state once it is newer than known_version and, when settled
        is asked for, ALIVE or DEAD; at once if it already is."""
        actor_id, known_version, settled = decode(actors.WaitActor, payload)
        record = self.actors.get(actor_id)
        if record is None:
            return ActorState(
                0, DEAD, "", f"no actor with id {actor_id} is known to the cluster", None
            )
        while record.version <= known_version or (
            settled and record.state in (PENDING, RESTARTING)
        ):
            future = self.runtime.loop.create_future()
            record.waiters.append(future)
            await future
        return record.view()

    async def handle_watch_actor(self, payload: list, call: Call) -> list:
        """The actor's state changes after known_version, once there are any (known_version
        -1: its state now). An unknown actor is reported dead at once."""
        actor_id, known = decode(actors.WatchActor, payload)
        record = self.actors.get(actor_id)
        if record is None:
            return [
                {
                    "actor_id": actor_id,
                    "version": 1,
                    "state": DEAD,
                    "restarts": 0,
                    "cause": f"no actor with id {actor_id} is known to the cluster",
                    "kind": "unknown",
                    "node_id": "",
                    "name": "",
                    "time": time.time(),
                }
            ]
        if known < 0:
            last = record.history[-1] if record.history else {}
            return [record.event(last.get("cause", ""), last.get("kind", ""))]
        while record.version <= known:
            future = self.runtime.loop.create_future()
            record.waiters.append(future)
            await future
        return [e for e in record.history if e["version"] > known] or [record.event()]

    def handle_get_named_actor(self, payload: list, call: Call) -> NamedActor:
        name, namespace = decode(actors.GetNamedActor, payload)
        actor_id = self.names.get((namespace or "", name))
        record = self.actors.get(actor_id) if actor_id else None
        if record is None or record.state == DEAD:
            raise ValueError(
                f"no actor named {name!r} in namespace {namespace!r} (it never "
                f"existed, it died, or it lives in another namespace)"
            )
        return NamedActor(record.actor_id, record.spec["meta"])

    def handle_list_actors(self, payload: Any, call: Call) -> list:
        return [
            {
                "actor_id": r.actor_id,
                "name": r.spec.get("name") or "",
                "namespace": r.spec.get("namespace") or "",
                "class_name": r.spec["class_name"],
                "state": r.state,
                "address": r.address,
                "restarts": r.restarts,
                "death_cause": r.death_cause,
                "node_id": r.node_id,
                "worker_id": r.worker_id,
                "job_id": r.spec.get("job_id", ""),
                "lifetime": r.spec.get("lifetime") or "",
                "resources": r.spec.get("resources") or {},
            }
            for r in self.actors.values()
        ]

    def handle_list_named_actors(self, payload: list, call: Call) -> list:
        all_namespaces, namespace = decode(actors.ListNamedActors, payload)
        return [
            {"name": name, "namespace": ns}
            for (ns, name) in self.names
            if all_namespaces or ns == namespace
        ]
