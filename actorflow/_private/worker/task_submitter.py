"""Owner-side task submission: resolve arguments, lease workers, push tasks, retry, cancel.

Tasks wait in a queue per resource shape. A leased worker takes one task at a time, or several
(pipelined) when the function has been seen to run in well under a round trip, so that batches of
tiny tasks are bound by the pipelined message rate and long tasks still spread over all workers.
An idle lease is kept for a moment (``lease_idle_seconds``) and then returned to the raylet.

Runs on the runtime loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.config import Config
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.ownership.lineage import NO_REFS, Lineage, TaskSpec
from actorflow._private.protocol.raylet import RequestLease, ReturnLease
from actorflow._private.protocol.worker import (
    CANCELLED,
    DRAINING,
    FAILED,
    OK,
    RESCHEDULE,
    CancelRunningTask,
    PushTask,
)
from actorflow._private.runtime import Runtime
from actorflow._private.scheduling_strategies import is_group_wire
from actorflow._private.worker.calls import STREAMING, CallOwner, CallRecord, Completion
from actorflow._private.worker.task_events import (
    TRACE_PUSHED,
    TRACE_READY,
    TRACE_SECONDS,
    TRACE_STARTED,
    TRACE_WORKER_ADDRESS,
    TRACE_WORKER_ID,
)

logger = logging.getLogger("actorflow.tasks")


RESOLVING, QUEUED, RUNNING, DONE = range(4)
STATE_NAMES = {RESOLVING: "resolving", QUEUED: "queued", RUNNING: "pushed"}


@dataclass(eq=False, kw_only=True, slots=True)
class PendingTask(CallRecord):
    fn_id: bytes
    fn_blob: bytes
    resources: dict[str, float]
    strategy: Any = None  # scheduling_strategies.py's wire form
    runtime_env: dict | None = None  # its runtime_env's wire form (None: none)
    env_key: str = ""  # what identifies that env (runtime_env/spec.env_key)
    state: int = RESOLVING
    worker: LeasedWorker | None = None
    force_cancel: bool = False


@dataclass(eq=False)
class LeasedWorker:
    lease_id: str
    worker_id: str
    address: str
    raylet_address: str  # the raylet that granted the lease: it gets it back
    gpu_ids: list[int] | None = None
    in_flight: int = 0
    slow_in_flight: int = 0  # of which not known to be short: nothing is pipelined behind them
    idle_timer: asyncio.TimerHandle | None = None
    dead: bool = False


@dataclass(eq=False)
class ShapeQueue:
    resources: dict[str, float]
    strategy: Any
    runtime_env: dict | None = None  # its workers run in it (leased for it)
    queue: deque = field(default_factory=deque)
    workers: list = field(default_factory=list)
    pending_leases: int = 0
    placement_group: list | None = None  # the group its tasks run in, told to the worker


class TaskSubmitter:
    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        owner: CallOwner,
        completion: Completion,
        lineage: Lineage | None = None,
    ) -> None:
        self.runtime = runtime
        self.lineage = lineage or Lineage(enabled=False)  # specs kept to re-create results
        self.config = config
        self.owner = owner
        self.completion = completion
        self.tasks: dict[bytes, PendingTask] = {}
        self.children: dict[bytes, set[bytes]] = {}  # parent task -> tasks it submitted
        self._shapes: dict[tuple, ShapeQueue] = {}
        self._fn_seconds: dict[bytes, float] = {}  # moving average of run time per function
        self._fns_sent: dict[str, set[bytes]] = {}  # worker address -> function ids it has
        self._dead_raylets: set[str] = set()  # of nodes the GCS declared dead
        self._items_of: tuple[Any, tuple] = (None, ())  # the last request dict, its pairs

    # -- submission -----------------------------------------------------------------------------

    def submit(self, task: PendingTask) -> None:
        self.tasks[task.task_id] = task
        if self.lineage.enabled and task.num_returns > 0:
            self._keep_lineage(task)
        if task.parent_task_id is not None:
            self.children.setdefault(task.parent_task_id, set()).add(task.task_id)
        # Count every slot first: a ready ref resolves synchronously inside resolve_ref.
        task.unresolved = len(task.slots)
        for slot in list(task.slots):

            def resolved(wire: list, slot: list = slot) -> None:
                self._resolved(task, slot, wire)

            self.owner.resolve_ref(slot[1], resolved)
        if not task.slots:
            self._enqueue(task)  # with slots, the last one resolved enqueues it

    def _keep_lineage(self, task: PendingTask) -> None:
        """Keep the task's spec while its results live, to run it again if they are lost
        (its ref arguments as ids: their values are not kept alive by it)."""
        slots = task.slots
        arg_refs = [[s[0], s[1].id, s[1].owner] for s in slots] if slots else NO_REFS
        self.lineage.record(TaskSpec(task, arg_refs, task.retries_left))

    def _resolved(self, task: PendingTask, slot: list, wire: list) -> None:
        if task.state != RESOLVING:
            return
        if serialization.is_error(wire):
            # An argument failed: the task fails with that same error without running.
            self._finish(task, [wire] * max(1, len(task.return_ids)))
            return
        slot[1] = wire
        task.unresolved -= 1
        if task.unresolved == 0:
            if task.events:
                task.trace[TRACE_READY] = time.time()
            self._enqueue(task)

    def _enqueue(self, task: PendingTask, front: bool = False) -> None:
        task.state = QUEUED
        items = task.resource_items or self._resource_items(task.resources)
        task.resource_items = items  # its queue's key, and its task events' request
        key = (items, repr(task.strategy), task.env_key)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = ShapeQueue(task.resources, task.strategy, task.runtime_env)
            if is_group_wire(task.strategy):
                shape.placement_group = task.strategy
        if front:
            shape.queue.appendleft(task)
        else:
            shape.queue.append(task)
        self._pump(shape)

    def _resource_items(self, resources: dict[str, float]) -> tuple:
        """resources as sorted pairs, made once per request dict (a remote function's tasks
        share theirs): queued tasks share the tuple."""
        if resources is not self._items_of[0]:
            self._items_of = (resources, tuple(sorted(resources.items())))
        return self._items_of[1]

    def _pump(self, shape: ShapeQueue) -> None:
        queue = shape.queue
        while queue:
            task = queue[0]
            if task.state != QUEUED:
                queue.popleft()
                continue
            worker = self._pick_worker(shape, task)
            if worker is None:
                break
            queue.popleft()
            self._push(shape, task, worker)
        wanted = min(len(queue), self.config.max_pending_lease_requests) - shape.pending_leases
        for _ in range(wanted):
            self._request_lease(shape)

    def _pick_worker(self, shape: ShapeQueue, task: PendingTask) -> LeasedWorker | None:
        for worker in shape.workers:
            if worker.in_flight == 0:
                return worker
        if not self._is_short(task.fn_id):
            return None
        best = None
        for worker in shape.workers:
            if (
                worker.slow_in_flight == 0
                and worker.in_flight < self.config.pipeline_depth
                and (best is None or worker.in_flight < best.in_flight)
            ):
                best = worker
        return best

    def _is_short(self, fn_id: bytes) -> bool:
        seconds = self._fn_seconds.get(fn_id)
        return seconds is not None and seconds <= self.config.pipeline_short_task_seconds

    def _request_lease(
        self, shape: ShapeQueue, raylet: str = "", spilled: bool = False, again: bool = False
    ) -> None:
        """Ask the local raylet (or, after a spillback, the one it named) for a lease; again:
        the same request, already counted in pending_leases."""
        if not (spilled or again):
            shape.pending_leases += 1
        raylet = raylet or self.owner.raylet_address
        message = RequestLease(
            shape.resources,
            False,
            self.owner.job_id,
            shape.strategy,
            spilled,
            self.owner.job_info,
            shape.runtime_env,
        )
        future = self.runtime.ask(raylet, message)
        future.add_done_callback(lambda f: self._lease_granted(shape, raylet, f))

    def _lease_granted(self, shape: ShapeQueue, raylet: str, future: asyncio.Future) -> None:
        if (
            future.exception() is None
            and future.result()[0] == "spillback"
            and not self.runtime.closed
        ):
            target = future.result()[1]
            if target in self._dead_raylets:
                # The local raylet's view is older than what we heard: that node is dead
                # (it may be frozen, and would never answer). Ask again in a moment.
                self.runtime.loop.call_later(
                    self.config.heartbeat_seconds, self._request_lease, shape, "", False, True
                )
                return
            self._request_lease(shape, target, spilled=True)
            return
        exc = future.exception()
        if (
            isinstance(exc, PeerUnreachableError)
            and raylet != self.owner.raylet_address
            and not self.runtime.closed
        ):
            # The node it was spilled to is gone: ask the local raylet again, once the
            # cluster's view has had a moment to drop that node.
            self.runtime.loop.call_later(
                self.config.heartbeat_seconds, self._request_lease, shape, "", False, True
            )
            return
        shape.pending_leases -= 1
        if exc is not None:
            if isinstance(exc, PeerUnreachableError) and self.runtime.closed:
                return
            # Unschedulable, or the node cannot start workers: every queued task of this shape
            # fails with that error rather than waiting forever.
            while shape.queue:
                task = shape.queue.popleft()
                if task.state == QUEUED:
                    self._finish(task, task.errors_for_all(exc))
            return
        lease_id, worker_id, address, gpu_ids = future.result()
        worker = LeasedWorker(lease_id, worker_id, address, raylet, gpu_ids)
        if raylet != self.owner.raylet_address:
            self.owner.watch_node_deaths()
        shape.workers.append(worker)
        self._pump(shape)
        if worker.in_flight == 0:
            self._schedule_return(shape, worker)

    def task_rows(self) -> list[dict[str, Any]]:
        """The tasks submitted here and not finished (for inspection): resolving their
        arguments, queued for a worker, or pushed to one."""
        return [
            {
                "task_id": t.task_id.hex(),
                "attempt": t.attempt,
                "name": t.fn_name,
                "actor_id": "",
                "state": STATE_NAMES.get(t.state, "finished"),
                "parent_task_id": t.parent_task_id.hex() if t.parent_task_id else "",
                "worker_id": t.worker.worker_id if t.worker else "",
                "worker_address": t.worker.address if t.worker else "",
            }
            for t in list(self.tasks.values())
            if not t.finished and t.state != DONE
        ]

    def node_died(self, raylet_address: str, reason: str) -> None:
        """A node is dead (maybe silently): tasks running on its workers are retried now, and
        lease requests waiting at its raylet fail (they are asked again locally)."""
        self._dead_raylets.add(raylet_address)
        self.runtime.drop_peer(raylet_address, reason)
        for shape in self._shapes.values():
            for worker in list(shape.workers):
                if worker.raylet_address == raylet_address:
                    self.runtime.drop_peer(worker.address, reason)

    def _schedule_return(self, shape: ShapeQueue, worker: LeasedWorker) -> None:
        if worker.idle_timer is None:
            worker.idle_timer = self.runtime.loop.call_later(
                self.config.lease_idle_seconds, self._return_lease, shape, worker
            )

    def _return_lease(self, shape: ShapeQueue, worker: LeasedWorker) -> None:
        worker.idle_timer = None
        if worker.in_flight or worker.dead:
            return
        shape.workers.remove(worker)
        self.runtime.tell(worker.raylet_address, ReturnLease(worker.lease_id, False))

    # -- pushing and replies --------------------------------------------------------------------

    def _push(self, shape: ShapeQueue, task: PendingTask, worker: LeasedWorker) -> None:
        task.state = RUNNING
        task.worker = worker
        if task.events:
            task.trace[TRACE_PUSHED] = time.time()
        worker.in_flight += 1
        slow = not self._is_short(task.fn_id)
        worker.slow_in_flight += slow
        if worker.idle_timer is not None:
            worker.idle_timer.cancel()
            worker.idle_timer = None
        sent = self._fns_sent.get(worker.address)
        if sent is None:
            sent = self._fns_sent[worker.address] = set()
        blob = None
        if task.fn_id not in sent:
            sent.add(task.fn_id)
            blob = task.fn_blob
        message = PushTask(
            task.task_id,
            task.fn_id,
            blob,
            task.fn_name,
            task.args_wire,
            task.slots,
            task.num_returns,
            self.owner.address,
            worker.gpu_ids,
            shape.placement_group,
        )
        on_stream: Callable[[Any], None] | None = None
        if task.num_returns == STREAMING:

            def on_stream(item: list) -> None:
                sender = task.worker.address if task.worker is not None else ""
                self.completion.stream_item(task, item, sender)

        future = self.runtime.ask(worker.address, message, on_stream)
        future.add_done_callback(lambda f: self._on_reply(shape, task, worker, slow, f))

    def _on_reply(
        self,
        shape: ShapeQueue,
        task: PendingTask,
        worker: LeasedWorker,
        slow: bool,
        future: asyncio.Future,
    ) -> None:
        worker.in_flight -= 1
        worker.slow_in_flight -= slow
        task.worker = None
        exc = future.exception()
        if exc is not None and not isinstance(exc, PeerUnreachableError):
            # The task could not be sent or answered (e.g. over the frame limit): its error.
            self._finish(task, task.errors_for_all(exc))
        elif exc is not None:
            if task.events:
                task.trace[TRACE_WORKER_ADDRESS] = worker.address
                task.trace[TRACE_WORKER_ID] = worker.worker_id
            self._worker_lost(shape, worker)
            self._after_crash(task, exc)
        else:
            status, payload, seconds, contained, started = future.result()
            if task.events:
                trace = task.trace
                trace[TRACE_STARTED], trace[TRACE_SECONDS] = started, seconds
                trace[TRACE_WORKER_ADDRESS] = worker.address
                trace[TRACE_WORKER_ID] = worker.worker_id
            old = self._fn_seconds.get(task.fn_id)
            self._fn_seconds[task.fn_id] = seconds if old is None else 0.8 * old + 0.2 * seconds
            if status == OK:
                self._forget(task)
                self.completion.succeeded(task, payload, contained, worker.address)
            elif status == FAILED:
                if self.completion.retries_on_error(task, payload):
                    task.retries_left -= 1
                    self.completion.retrying(task, payload)
                    self._enqueue(task)
                else:
                    self._finish(task, [payload] * len(task.return_ids))
            elif status == CANCELLED:
                self._finish_cancelled(task)
            elif status == RESCHEDULE:
                if payload == DRAINING:
                    self._retire(shape, worker)  # its node is leaving: lease elsewhere
                self._enqueue(task, front=True)
        if not worker.dead:
            if worker.in_flight == 0 and not shape.queue:
                self._schedule_return(shape, worker)
            self._pump(shape)

    def _retire(self, shape: ShapeQueue, worker: LeasedWorker) -> None:
        """The worker's node drains: push it nothing more, and give its lease back (its node
        ends it once what it runs is done)."""
        if worker.dead:
            return
        worker.dead = True
        if worker in shape.workers:
            shape.workers.remove(worker)
        if worker.idle_timer is not None:
            worker.idle_timer.cancel()
            worker.idle_timer = None
        self._fns_sent.pop(worker.address, None)
        self.runtime.tell(worker.raylet_address, ReturnLease(worker.lease_id, False))

    def _worker_lost(self, shape: ShapeQueue, worker: LeasedWorker) -> None:
        if worker.dead:
            return
        worker.dead = True
        if worker in shape.workers:
            shape.workers.remove(worker)
        self._fns_sent.pop(worker.address, None)
        self.runtime.tell(worker.raylet_address, ReturnLease(worker.lease_id, True))

    def _after_crash(self, task: PendingTask, exc: BaseException) -> None:
        if task.cancel_requested:
            self._finish_cancelled(task)
        elif task.retries_left != 0 and task.streamed == 0:
            task.retries_left -= 1
            logger.info("retrying task %s: its worker died (%s)", task.fn_name, exc)
            self.completion.retrying(
                task, errors.WorkerCrashedError(f"the worker running {task.fn_name}() died ({exc})")
            )
            self._enqueue(task, front=True)
        else:
            error = errors.WorkerCrashedError(
                f"the worker running {task.fn_name}() died before it finished ({exc}); "
                f"no retries left"
            )
            self._finish(task, task.errors_for_all(error))

    # -- completion -----------------------------------------------------------------------------

    def _forget(self, task: PendingTask) -> None:
        """The task is done: it is no longer this submitter's to retry or cancel."""
        if task.state == DONE:
            return
        task.state = DONE
        self.tasks.pop(task.task_id, None)
        if task.slots and task.task_id in self.lineage.specs:
            task.slots = []  # its arguments' values: the spec keeps their ids, not them
        if task.parent_task_id is not None:
            siblings = self.children.get(task.parent_task_id)
            if siblings is not None:
                siblings.discard(task.task_id)
                if not siblings:
                    del self.children[task.parent_task_id]

    def _finish(self, task: PendingTask, wires: list) -> None:
        self._forget(task)
        self.completion.finish(task, wires)

    def _finish_cancelled(self, task: PendingTask) -> None:
        self._forget(task)
        self.completion.cancelled(task, "task")

    # -- cancellation ---------------------------------------------------------------------------

    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.state == DONE:
            return
        task.cancel_requested = True
        task.force_cancel = task.force_cancel or force
        if task.state in (RESOLVING, QUEUED):
            self._finish_cancelled(task)
        elif task.worker is not None:
            self.runtime.tell(task.worker.address, CancelRunningTask(task_id, force, recursive))

    def cancel_children(self, parent_task_id: bytes, force: bool) -> None:
        for child in list(self.children.get(parent_task_id, ())):
            self.cancel(child, force, True)
