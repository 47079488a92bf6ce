"""Messages to the control store (actor "gcs"): nodes, jobs and the key-value store, and the
replies callers unpack.

``get_nodes`` and ``list_jobs`` carry no payload (answered with the node and job tables as
dicts), nor does ``ping`` (a GCS process answering that it is up, in cluster/node_main.py).
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message

# -- nodes --------------------------------------------------------------------------------------


@message("gcs", "register_node")
class RegisterNode(NamedTuple):
    """A node joins (or joins again, after a GCS restart)."""

    node_id: str
    address: str  # its raylet's
    resources: dict  # its total resources
    info: dict  # what tools see of it: host, pid, is_head, session_dir, shm_prefix, ...


@message("gcs", "heartbeat")
class Heartbeat(NamedTuple):
    """A node's free resources (answered with a list of PeerNode: every live node)."""

    node_id: str
    available: dict
    queued: int  # lease requests waiting there
    # What the autoscaler reads (node/demand.py): shapes waiting for resources, requests no
    # node could fit, and what keeps the node busy (leases, kept workers, primary objects).
    report: dict | None = None


@message("gcs", "drain_node")
class DrainNode(NamedTuple):
    """A node is leaving (SIGTERM): no new leases or actors go to it; the node process ends
    once its running tasks finish or its grace period is over."""

    node_id: str
    reason: str


class PeerNode(NamedTuple):
    """A live node, as a heartbeat's answer lists it."""

    node_id: str
    address: str
    resources: dict
    available: dict


@message("gcs", "wait_node_deaths")
class WaitNodeDeaths(NamedTuple):
    """Long poll: answered with the DeadNodes after the first ``known``, once there are any."""

    known: int


class DeadNode(NamedTuple):
    node_id: str
    address: str


# -- jobs ---------------------------------------------------------------------------------------


@message("gcs", "register_job")
class RegisterJob(NamedTuple):
    """A driver starts a job (answered with its job id)."""

    driver_address: str
    namespace: str
    config: dict | None = None  # the driver's sys_path and where output goes (log_address)


@message("gcs", "job_info")
class JobInfo(NamedTuple):
    """A job's row (answered with nil for an unknown job)."""

    job_id: str


# -- key-value ----------------------------------------------------------------------------------

# Entries of this namespace are keyed by an actor id and go when that actor is dead for good:
# state an actor keeps across its restarts (a supervisor's children, supervision/).
ACTOR_STATE_NAMESPACE = "actor_state"

# Where each supervisor (actorflow.supervision) keeps its report for the dashboard and
# `actorflow list supervisors`: the key is its actor id, the value JSON (its children, its
# recent restart history).
SUPERVISION_NAMESPACE = "actorflow_supervision"


@message("gcs", "kv_put")
class KvPut(NamedTuple):
    """Answered with whether it was stored (not when the key exists and overwrite is false)."""

    namespace: str
    key: bytes
    value: bytes
    overwrite: bool


@message("gcs", "kv_get")
class KvGet(NamedTuple):
    namespace: str
    key: bytes


@message("gcs", "kv_del")
class KvDel(NamedTuple):
    namespace: str
    key: bytes


@message("gcs", "kv_keys")
class KvKeys(NamedTuple):
    namespace: str
    prefix: bytes
