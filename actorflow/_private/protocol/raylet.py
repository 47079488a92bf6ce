"""Messages to a node's raylet (actor "raylet"): leases, its workers, jobs.

``refresh_view`` and ``node_info`` carry no payload.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from actorflow._private.protocol.message import message


@message("raylet", "request_lease")
class RequestLease(NamedTuple):
    """A worker for this resource shape: answered with a Lease or a Spillback."""

    resources: dict  # {"CPU": 1.0, ...}
    dedicated: bool  # for an actor: the worker is its own until the lease returns
    job_id: str | None = None  # None: the node's prestarted job
    strategy: Any = None  # scheduling_strategies.strategy_to_wire's form
    spilled: bool = False  # another raylet sent it here: queue it here if it can ever fit
    job: dict | None = None  # the job's namespace and config, to start its workers
    # The runtime_env its work runs in (runtime_env/spec.py's wire form; None: no env): only
    # workers started in that env serve it.
    runtime_env: dict | None = None


class Lease(NamedTuple):
    lease_id: str
    worker_id: str
    worker_address: str
    gpu_ids: list | None  # None on a node without GPUs


class Spillback(NamedTuple):
    """Ask that raylet instead (it had room when this one decided)."""

    spillback: str  # always "spillback": tells a Spillback from a Lease
    raylet_address: str
    node_id: str


@message("raylet", "return_lease")
class ReturnLease(NamedTuple):
    lease_id: str
    kill_worker: bool


@message("raylet", "reclaim_orphaned_leases")
class ReclaimOrphanedLeases(NamedTuple):
    """From a restarted GCS: the actor leases it knows; the node's other orphaned ones end."""

    known: list


@message("raylet", "register_worker")
class RegisterWorker(NamedTuple):
    """A worker this node started is up (answered with {"node_id"})."""

    worker_id: str
    address: str
    pid: int


@message("raylet", "keep_worker")
class KeepWorker(NamedTuple):
    """The worker owns what others use: never end it for being idle."""

    worker_id: str


@message("raylet", "worker_blocked")
class WorkerBlocked(NamedTuple):
    """A task of the worker waits in get(): its CPU is free meanwhile."""

    worker_id: str


@message("raylet", "worker_unblocked")
class WorkerUnblocked(NamedTuple):
    worker_id: str


@message("raylet", "assigned_resources")
class AssignedResources(NamedTuple):
    """What the worker's current lease holds (get_runtime_context().get_assigned_resources())."""

    worker_id: str


@message("raylet", "prepare_runtime_env")
class PrepareRuntimeEnv(NamedTuple):
    """A new job's runtime_env, to set up now (Ray's eager_install), before work asks for it."""

    job_id: str
    runtime_env: dict


@message("raylet", "job_finished")
class JobFinished(NamedTuple):
    job_id: str


# -- placement-group bundles (two-phase reservation by the GCS) ----------------------------------


@message("raylet", "prepare_bundles")
class PrepareBundles(NamedTuple):
    """Reserve these bundles of a group out of the node's free resources, all or none
    (answered with whether they were reserved)."""

    pg_id: str
    bundles: list  # [[index, {"CPU": 1.0, ...}], ...]


@message("raylet", "commit_bundles")
class CommitBundles(NamedTuple):
    """The group is reserved on every node: these prepared bundles may now be leased from."""

    pg_id: str
    indexes: list


@message("raylet", "cancel_bundles")
class CancelBundles(NamedTuple):
    """Give a group's bundles back to the node (indexes None: all of them): the workers leased
    in them end and lease requests waiting for them fail."""

    pg_id: str
    indexes: list | None = None
    reason: str = ""


@message("raylet", "reclaim_bundles")
class ReclaimBundles(NamedTuple):
    """From a restarted GCS: the committed bundles it knows here ([[pg_id, index], ...]); the
    node gives back any other (answered with how many)."""

    known: list
