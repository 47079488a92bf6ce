"""Inspecting a running cluster from inside it (a driver or worker) or from outside (the CLI).

A ``Snapshot`` is what every reachable process and store said when asked: the owners' and
borrowers' ``list_refs`` rows, the stores' ``list_objects`` rows and ``stats``. ``collect`` asks
the GCS for the nodes and jobs, then every node's raylet, store and processes, all at once;
a process that does not answer (it exited) is skipped. ``merge_objects`` turns a snapshot into
one row per object (a pure function).

``Connection`` says how to reach the cluster: this process's own runtime when it is part of the
cluster, or a runtime of its own, on a loop thread of its own, that authenticates with the
cluster token found in the session directory (or ``ACTORFLOW_TOKEN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actorflow._private import errors
from actorflow._private.cluster import enrollment, session_dir
from actorflow._private.cluster.launcher import cluster_token, tcp_address
from actorflow._private.config import Config
from actorflow._private.errors import NoTokenError, PeerUnreachableError
from actorflow._private.runtime import Runtime
from actorflow._private.worker import context

T = TypeVar("T")


Ask = Callable[[str, str, str, Any], Awaitable[Any]]


@dataclass
class Snapshot:
    refs: list[dict[str, Any]] = field(default_factory=list)  # every process's list_refs rows
    stored: list[dict[str, Any]] = field(default_factory=list)  # every store's list_objects rows
    store_stats: list[dict[str, Any]] = field(default_factory=list)  # one per node
    pids: dict[str, int] = field(default_factory=dict)  # process address -> pid
    unreachable: list[str] = field(default_factory=list)  # processes that did not answer
    drivers: list[str] = field(default_factory=list)  # the live drivers' addresses


# -- reaching the cluster -----------------------------------------------------------------------


@dataclass
class Target:
    gcs_address: str
    token: bytes
    session: str = ""  # the session directory it was found in, for error messages


def _hint(root: str) -> str:
    return (
        "no running actorflow cluster found: start one with `actorflow start --head` or "
        f"actorflow.init() (its session directory goes under {root}; set "
        "ACTORFLOW_SESSION_ROOT if it is elsewhere), or pass --address"
    )


def _read_session(path: str) -> tuple[dict[str, Any], bytes] | None:
    """node.json and the token of a session directory (None if either is missing)."""
    node = session_dir.read_json(os.path.join(path, "node.json"))
    token = session_dir.read_token(path)
    if node is None or token is None or not node.get("gcs_address"):
        return None
    return node, token


def _latest_live(root: str) -> Target:
    """The session_latest link's cluster if its GCS runs, else the newest session whose does."""
    latest = os.path.join(root, "session_latest")
    candidates = [latest] if os.path.isdir(latest) else []
    candidates += [
        p for p in session_dir.sessions(root) if os.path.realpath(p) != os.path.realpath(latest)
    ]
    ended = ""
    for path in candidates:
        found = _read_session(path)
        if found is None:
            continue
        node, token = found
        if session_dir.pid_running(int(node.get("pid", 0))):
            return Target(node["gcs_address"], token, os.path.realpath(path))
        ended = ended or os.path.realpath(path)
    if ended:
        raise errors.ClusterNotFoundError(
            f"no running actorflow cluster found: the latest session ({ended}) has ended; start "
            f"one with `actorflow start --head` or actorflow.init(), or pass --address"
        )
    raise errors.ClusterNotFoundError(_hint(root))


def find_target(address: str | None, config: Config | None = None) -> Target:
    """Where an outside client connects: the latest live session (address None or "auto"), or
    an explicit GCS address with the token from ACTORFLOW_TOKEN or that cluster's session on
    this machine (launcher.cluster_token)."""
    config = config or Config.from_env()
    root = config.session_root
    if address in (None, "", "auto"):
        return _latest_live(root)
    gcs_address = tcp_address(address)
    try:
        token, session = cluster_token(gcs_address, root)
    except NoTokenError as exc:
        raise errors.ClusterNotFoundError(str(exc)) from None
    return Target(gcs_address, token, session or "")


def _same_address(a: str, b: str) -> bool:
    return tcp_address(a) == tcp_address(b)


def run(
    address: str | None,
    job: Callable[[Ask, str], Coroutine[Any, Any, T]],
    timeout: float | None = None,
) -> T:
    """Run job(ask, gcs_address) on a runtime connected to the cluster at address (None: this
    process's cluster if it is part of one, else the latest session) and return its result;
    ``GetTimeoutError`` if it takes longer than timeout seconds. Within a ``KeptConnection``'s
    ``active()`` (the dashboard's), its runtime is used."""
    if timeout is not None:
        job = _bounded(job, timeout)
    kept = _kept_open.get()
    if kept is not None and (
        address in (None, "", "auto") or _same_address(address, kept.target.gcs_address)
    ):
        return kept.run(job)
    core = context.core_or_none()
    if core is not None and (
        address in (None, "", "auto") or _same_address(address, core.gcs_address)
    ):
        if core.on_loop_thread():
            raise errors.AsyncioContextError(
                "cluster inspection blocks and cannot run on actorflow's own event loop (inside "
                "an async actor or async task): call it from a thread of your own"
            )
        coro = job(_asker(core.runtime, core.config), core.gcs_address)
        return asyncio.run_coroutine_threadsafe(coro, core.runtime.loop).result()
    return _run_outside(find_target(address), job)


class KeptConnection:
    """A runtime kept open to one cluster, on a loop the caller runs (the dashboard's): while
    ``active()`` in a thread's context, ``run`` asks through it, instead of opening a runtime
    (and a connection to every process) per query."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: Target) -> None:
        self.loop = loop
        self.target = target
        self.config = Config.from_env()
        self.runtime = Runtime(
            loop,
            target.token,
            self.config.max_frame_size,
            min(self.config.connect_timeout, self.config.inspection_request_timeout),
        )

    async def start(self) -> None:
        await self.runtime.start("tcp://127.0.0.1:0")

    async def aclose(self) -> None:
        await self.runtime.aclose()

    async def run_async(self, job: Callable[[Ask, str], Coroutine[Any, Any, T]]) -> T:
        """The job, on the kept runtime (called on its loop)."""
        return await job(_asker(self.runtime, self.config), self.target.gcs_address)

    def run(self, job: Callable[[Ask, str], Coroutine[Any, Any, T]]) -> T:
        """The job, from a thread other than the loop's (blocking it until done)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise errors.AsyncioContextError(
                "cluster inspection blocks: call it from a thread (asyncio.to_thread), not on "
                "the loop of the connection it uses"
            )
        return asyncio.run_coroutine_threadsafe(self.run_async(job), self.loop).result()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make ``run`` (and so every ``actorflow.util.state`` query) use this connection."""
        token = _kept_open.set(self)
        try:
            yield
        finally:
            _kept_open.reset(token)


_kept_open: contextvars.ContextVar[KeptConnection | None] = contextvars.ContextVar(
    "actorflow_inspection_connection", default=None
)


def _bounded(
    job: Callable[[Ask, str], Coroutine[Any, Any, T]], timeout: float
) -> Callable[[Ask, str], Coroutine[Any, Any, T]]:
    async def bounded(ask: Ask, gcs_address: str) -> T:
        try:
            return await asyncio.wait_for(job(ask, gcs_address), timeout)
        except asyncio.TimeoutError:
            raise errors.GetTimeoutError(
                f"the cluster did not answer the query within {timeout} s"
            ) from None

    return bounded


def _asker(runtime: Runtime, config: Config) -> Ask:
    """Ask one process; one that takes longer than inspection_request_timeout is skipped."""
    timeout = config.inspection_request_timeout

    async def ask(address: str, target: str, method: str, payload: Any) -> Any:
        return await asyncio.wait_for(runtime.request(address, target, method, payload), timeout)

    return ask


def _run_outside(target: Target, job: Callable[[Ask, str], Coroutine[Any, Any, T]]) -> T:
    from actorflow._private.loop_thread import LoopThread

    config = Config.from_env()
    loop_thread = LoopThread(name="actorflow-inspect")
    loop_thread.start()
    runtime = Runtime(
        loop_thread.loop,
        target.token,
        config.max_frame_size,
        min(config.connect_timeout, config.inspection_request_timeout),
    )

    async def main() -> T:
        runtime.tls = await enrollment.client_tls(
            target.gcs_address, target.token, target.session, config, name="inspect"
        )
        await runtime.start("tcp://127.0.0.1:0")
        try:
            return await job(_asker(runtime, config), target.gcs_address)
        finally:
            await runtime.aclose()

    try:
        return loop_thread.run(main())
    except errors.ClusterNotFoundError as exc:
        if not target.session:
            raise
        raise errors.ClusterNotFoundError(f"{exc} (its session: {target.session})") from None
    finally:
        loop_thread.stop()


# -- asking -------------------------------------------------------------------------------------


async def _ask_gcs(ask: Ask, gcs_address: str, method: str, target: str = "gcs") -> Any:
    """Ask the GCS process (target "gcs": nodes, jobs; "actors": the actor table)."""
    try:
        return await ask(gcs_address, target, method, None)
    except errors.TLSError:
        raise
    except errors.AuthenticationError as exc:
        raise errors.AuthenticationError(
            f"authentication with the cluster at {gcs_address} failed: the token does not match "
            f"({exc}); set ACTORFLOW_TOKEN to the token in the cluster's session directory"
        ) from None
    except (PeerUnreachableError, asyncio.TimeoutError, OSError) as exc:
        raise errors.ClusterNotFoundError(
            f"no running actorflow cluster found at {gcs_address}: {exc}"
        ) from None


async def _ask_or_none(ask: Ask, address: str, target: str, method: str) -> Any:
    """The answer, or None when the process is gone, hung or not (yet) serving target."""
    try:
        return await ask(address, target, method, None)
    except (PeerUnreachableError, asyncio.TimeoutError, OSError, LookupError):
        return None


async def collect(ask: Ask, gcs_address: str) -> Snapshot:
    nodes = [n for n in await _ask_gcs(ask, gcs_address, "get_nodes") if n.get("alive", True)]
    jobs = await _ask_gcs(ask, gcs_address, "list_jobs")
    node_addresses = [n["address"] for n in nodes]
    infos, stored, stats = await asyncio.gather(
        asyncio.gather(*[_ask_or_none(ask, a, "raylet", "node_info") for a in node_addresses]),
        asyncio.gather(*[_ask_or_none(ask, a, "store", "list_objects") for a in node_addresses]),
        asyncio.gather(*[_ask_or_none(ask, a, "store", "stats") for a in node_addresses]),
    )
    snapshot = Snapshot()
    processes: dict[str, None] = {}  # ordered set: drivers first, then workers
    for job in jobs:
        if job.get("alive", True) and job.get("driver_address"):
            processes[job["driver_address"]] = None
            snapshot.drivers.append(job["driver_address"])
    for info in infos:
        for worker in (info or {}).get("workers", []):
            if worker.get("address") and worker.get("state") != "dead":
                processes[worker["address"]] = None
                snapshot.pids[worker["address"]] = worker.get("pid", 0)
    answers = await asyncio.gather(*[_ask_or_none(ask, a, "core", "list_refs") for a in processes])
    for address, rows in zip(processes, answers, strict=True):
        if rows is None:
            snapshot.unreachable.append(address)
            continue
        for row in rows:
            snapshot.pids[row["process"]] = row["pid"]
        snapshot.refs.extend(rows)
    snapshot.stored = [row for rows in stored if rows for row in rows]
    snapshot.store_stats = [s for s in stats if s]
    return snapshot


@dataclass
class ClusterView:
    """What the GCS and every live node's raylet said: the tables behind ``actorflow status``
    and ``actorflow list``."""

    gcs_address: str
    nodes: list[dict[str, Any]]  # the GCS's node table, dead nodes too
    actors: list[dict[str, Any]]  # the GCS's actor table
    jobs: list[dict[str, Any]]
    node_infos: dict[str, dict[str, Any]]  # node_id -> its raylet's node_info (live ones)
    unreachable: list[str] = field(default_factory=list)  # live nodes whose raylet did not answer
    demand: dict[str, Any] = field(default_factory=dict)  # the GCS's cluster_demand answer


async def collect_cluster(ask: Ask, gcs_address: str) -> ClusterView:
    nodes, actors, jobs, demand = await asyncio.gather(
        _ask_gcs(ask, gcs_address, "get_nodes"),
        _ask_gcs(ask, gcs_address, "list_actors", "actors"),
        _ask_gcs(ask, gcs_address, "list_jobs"),
        _ask_gcs(ask, gcs_address, "cluster_demand"),
    )
    live = [n for n in nodes if n.get("alive", True)]
    infos = await asyncio.gather(
        *[_ask_or_none(ask, n["address"], "raylet", "node_info") for n in live]
    )
    view = ClusterView(gcs_address, nodes, actors, jobs, {}, demand=demand or {})
    for node, info in zip(live, infos, strict=True):
        if info is None:
            view.unreachable.append(node["address"])
        else:
            view.node_infos[node["node_id"]] = info
    return view


@dataclass
class TaskSnapshot:
    """The tasks the cluster's processes know of now: what each owner submitted and has not
    seen finish (``list_tasks`` rows), and what each worker runs or has queued
    (``list_running`` rows), with the cluster view they were found through."""

    view: ClusterView
    submitted: dict[str, list[dict[str, Any]]]  # owner address -> its unfinished tasks
    running: dict[str, list[dict[str, Any]]]  # worker address -> what it runs or queued
    drivers: dict[str, str]  # driver address -> its job id
    # The GCS's task events: [[job_id, event], ...] (protocol/task_events.py), asked after the
    # owners, which report what they buffered before they answer; and the events lost per job.
    events: list[list] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)


async def collect_demand(ask: Ask, gcs_address: str) -> dict[str, Any]:
    """The GCS's sum of the pending demand alone (cheap: one request, for autoscalers)."""
    demand: dict[str, Any] = await _ask_gcs(ask, gcs_address, "cluster_demand")
    return demand


async def collect_tasks(ask: Ask, gcs_address: str) -> TaskSnapshot:
    view = await collect_cluster(ask, gcs_address)
    drivers = {
        j["driver_address"]: j["job_id"]
        for j in view.jobs
        if j.get("alive", True) and j.get("driver_address")
    }
    workers = [
        w["address"]
        for info in view.node_infos.values()
        for w in info.get("workers", [])
        if w.get("address") and w.get("state") != "dead"
    ]
    owners = list(dict.fromkeys([*drivers, *workers]))
    submitted, running = await asyncio.gather(
        asyncio.gather(*[_ask_or_none(ask, a, "core", "list_tasks") for a in owners]),
        asyncio.gather(*[_ask_or_none(ask, a, "worker", "list_running") for a in workers]),
    )
    history = await _ask_or_none(ask, gcs_address, "task_events", "list_events") or {}
    return TaskSnapshot(
        view,
        {a: rows for a, rows in zip(owners, submitted, strict=True) if rows},
        {a: rows for a, rows in zip(workers, running, strict=True) if rows},
        drivers,
        list(history.get("events") or []),
        dict(history.get("dropped") or {}),
    )


# -- merging ------------------------------------------------------------------------------------

STATS_KEYS = (
    "capacity",
    "used",
    "in_use",
    "pooled",
    "pinned",
    "objects",
    "spilled_objects",
    "spilled_bytes",
    "spill_count",
)


def total_stats(per_node: list[dict[str, Any]]) -> dict[str, Any]:
    """The stores' stats summed over the nodes (one node: its own stats)."""
    total: dict[str, Any] = {key: 0 for key in STATS_KEYS}
    for stats in per_node:
        for key in STATS_KEYS:
            total[key] += int(stats.get(key, 0))
    total["nodes"] = len(per_node)
    return total


def _store_view(rows: list[dict[str, Any]]) -> tuple[str, int, int]:
    """(where, size, readers) of an object over the stores that hold it (several nodes may hold
    copies): "shared" if any holds it in memory, else "spilled"."""
    where = "shared" if any(r["where"] == "shared" for r in rows) else "spilled"
    return where, max(r["size"] for r in rows), sum(r["readers"] for r in rows)


def merge_objects(snapshot: Snapshot) -> list[dict[str, Any]]:
    """One row per object: the owner's view, with where the store keeps it and who borrows it.

    Objects whose owner did not answer still show, from their borrowers' and the stores' rows
    (owner_pid None). Objects their owner freed that linger only until a reader lets go do not.
    """
    owned: dict[str, dict[str, Any]] = {}
    borrowed: dict[str, list[dict[str, Any]]] = {}
    stored: dict[str, list[dict[str, Any]]] = {}
    for row in snapshot.refs:
        if row["owned"]:
            owned[row["object_id"]] = row
        else:
            borrowed.setdefault(row["object_id"], []).append(row)
    for row in snapshot.stored:
        if not row["freed"]:
            stored.setdefault(row["object_id"], []).append(row)
    result = []
    for obj_id in dict.fromkeys([*owned, *borrowed, *stored]):
        mine, theirs, copies = owned.get(obj_id), borrowed.get(obj_id, []), stored.get(obj_id)
        store_where, store_size, readers = _store_view(copies) if copies else ("", 0, 0)
        if mine is not None:
            owner, where, size = mine["owner"], mine["where"], mine["size"]
            holders = set(mine["borrowers"])
        else:
            owner = theirs[0]["owner"] if theirs else copies[0]["owner"] if copies else ""
            fetched = [r for r in theirs if r["where"] != "pending"]
            where = fetched[0]["where"] if fetched else "pending"
            size = max([r["size"] for r in fetched] or [0])
            holders = set()
        if store_where and (where == "shared" or (mine is None and where == "pending")):
            where = store_where  # the store knows whether it spilled the object
        holders |= {r["process"] for r in theirs if r["local_refs"] > 0 or r["pinned_by_tasks"]}
        holders.discard(owner)
        result.append(
            {
                "object_id": obj_id,
                "size": size or store_size,
                "owner": owner,
                "owner_pid": snapshot.pids.get(owner) if owner else None,
                "where": where,
                "local_refs": mine["local_refs"] if mine else 0,
                "borrowers": len(holders),
                "borrower_addresses": sorted(holders),
                "pinned_by_tasks": (mine["pinned_by_tasks"] if mine else 0)
                + sum(r["pinned_by_tasks"] for r in theirs),
                "readers": readers,
                "contained_refs": mine["contained_refs"] if mine else 0,
                "error": bool(mine and mine["error"]),
            }
        )
    return result
