"""Messages to a worker: tasks for its executor (actor "worker"), calls for the actor it hosts
(actor "actor"), and what they answer.

Every task or call is answered with a ``Reply``; a streaming one also sends a ``StreamItem`` per
item it yields before that. ``list_running`` (to "worker", for inspection) carries no payload.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from actorflow._private.protocol.message import message

# Reply statuses.
OK = 0  # payload: one wire per result
FAILED = 1  # payload: the error's wire
CANCELLED = 2  # payload: nil
RESCHEDULE = 3  # the worker is leaving: send the task elsewhere (payload: nil, or DRAINING)
DRAINING = "draining"  # RESCHEDULE's payload from a worker of a draining node: lease it no more


# A task's or call's answer: (status, payload, seconds it ran, contained, started), where
# contained lists the refs and handles inside the results (["object"|"actor", ...]), seconds tells
# the owner which functions are short, and started is the wall-clock time it began running (0.0
# if it never ran), for the owner's task events. A plain tuple, not a NamedTuple: one is built
# for every call.
Reply = tuple[int, Any, float, list, float]


class StreamItem(NamedTuple):
    position: int  # which item of the stream (from 0)
    wire: list
    contained: list


@message("worker", "push_task")
class PushTask(NamedTuple):
    task_id: bytes
    fn_id: bytes
    fn_blob: bytes | None  # the function, the first time this worker gets it from us
    fn_name: str
    args_wire: list
    slots: list  # [[position or keyword, wire], ...]: resolved top-level ref arguments
    num_returns: int
    owner: str
    gpu_ids: list | None = None  # the GPUs of the lease, for CUDA_VISIBLE_DEVICES
    placement_group: list | None = None  # the group it runs in (scheduling_strategies' wire)


@message("worker", "drain")
class DrainWorker(NamedTuple):
    """From the raylet of a draining node: run no new task (each is sent back to its owner
    with RESCHEDULE, DRAINING); answered once the running ones have finished."""

    reason: str


@message("worker", "cancel_task")
class CancelRunningTask(NamedTuple):
    task_id: bytes
    force: bool
    recursive: bool


@message("actor", "become_actor")
class BecomeActor(NamedTuple):
    """The GCS makes this worker host an actor (answered like a task: a Reply)."""

    actor_id: str
    spec: dict
    restarts: int
    gcs_address: str
    gpu_ids: list | None = None


@message("actor", "call")
class CallMethod(NamedTuple):
    task_id: bytes
    method: str
    args_wire: list
    slots: list
    num_returns: int
    caller: str


@message("actor", "cancel")
class CancelCall(NamedTuple):
    task_id: bytes
    force: bool
