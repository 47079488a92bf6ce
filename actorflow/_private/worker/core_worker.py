"""The core worker: the owner side of every process (driver or worker), as the ``core`` actor.

A thin facade that wires the parts together and answers owners' and borrowers' messages:
ownership (ownership/state.py: what this process owns and borrows, sans-IO) with the IO it asks
for; calls (submission.py, task_submitter.py, actor_submitter.py, calls.py); waiting for values
(waiting.py); values in shared memory (shared_objects.py); requests to the system actors
(control_client.py). Its public methods are called from user threads; the rest runs on the
runtime loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from actorflow._private import errors, ids, serialization
from actorflow._private.config import Config
from actorflow._private.node.segments import SegmentTable
from actorflow._private.ownership.handles import HandleCounts
from actorflow._private.ownership.state import Ownership
from actorflow._private.protocol import core, gcs, raylet, store
from actorflow._private.protocol.message import decode
from actorflow._private.runtime import Call, Runtime
from actorflow._private.worker import output, progress_bars
from actorflow._private.worker.actor_submitter import ActorSubmitter
from actorflow._private.worker.arguments import ArgumentPacker
from actorflow._private.worker.calls import Completion
from actorflow._private.worker.control_client import ControlClient
from actorflow._private.worker.metrics import MetricsReporter
from actorflow._private.worker.object_ref import ObjectRef
from actorflow._private.worker.ownership_io import OwnershipIO
from actorflow._private.worker.recovery import Recovery
from actorflow._private.worker.runtime_envs import RuntimeEnvs
from actorflow._private.worker.shared_objects import SharedObjects
from actorflow._private.worker.streams import StreamTable
from actorflow._private.worker.submission import Submission
from actorflow._private.worker.task_context import Blocking, configure_blocking
from actorflow._private.worker.task_events import TaskEventBuffer
from actorflow._private.worker.task_submitter import TaskSubmitter
from actorflow._private.worker.waiting import Waiting

logger = logging.getLogger("actorflow.core")


class CoreWorker:
    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        *,
        mode: str,
        raylet_address: str,
        gcs_address: str,
        node_id: str,
        worker_id: str,
        job_id: str,
        namespace: str,
        shm_prefix: str = "",
        spill_dir: str = "",
        segment_socket: str = "",
        local_segments: SegmentTable | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.mode = mode  # "driver" or "worker"
        self.raylet_address = raylet_address
        self.gcs_address = gcs_address
        self.node_id = node_id
        self.worker_id = worker_id
        self.job_id = job_id
        self.namespace = namespace
        # The job as raylets need it to start its workers ({"namespace", "config"}: see
        # raylet._ensure_job_env), sent with lease requests.
        self.job_info: dict[str, Any] | None = None
        self.extensions: dict[str, Any] = {"shm_prefix": shm_prefix} if shm_prefix else {}
        self._kept = False
        self.log_address = ""  # where this worker's output and progress go ("" the driver's own)
        self._watching_nodes = False

        self.ownership = Ownership(runtime.address)
        self.ownership.lineage.enabled = config.lineage_pinning_enabled
        self.ownership.lineage.max_bytes = config.max_lineage_bytes
        self.objects = self.ownership.objects
        self.control = ControlClient(runtime, config, gcs_address)
        self.gcs_request = self.control.gcs_request
        self.call_control = self.control.call_control
        self.request_from_any_loop = self.control.request_from_any_loop
        self.on_loop_thread = self.control.on_loop_thread
        self._kept_out_of_band: dict[bytes, Any] = {}  # see keep_forever
        self.blocking = Blocking()  # the worker process sets its hooks
        configure_blocking(runtime.loop, config.strict_asyncio_blocking)
        self.shared = SharedObjects(
            runtime,
            config,
            self.control,
            self.objects,
            node_id=node_id,
            raylet_address=raylet_address,
            shm_prefix=shm_prefix,
            spill_dir=spill_dir,
            segment_socket=segment_socket,
            local_segments=local_segments,
        )
        self.refs = refs = OwnershipIO(
            runtime, self.ownership, self.shared, self.on_loop_thread, config.in_flight_seconds
        )
        # What refs, the executor and the submitters call on their process's core worker:
        self.set_object = refs.set_object
        self.resolve_ref = refs.resolve_ref
        self.add_local_ref = refs.add_local_ref
        self.after_borrows_settled = refs.after_borrows_settled
        self.contained_in = refs.contained_in
        self.keep_in_flight = refs.keep_in_flight
        self.streams = StreamTable(self.objects, self.set_object, self.blocking)
        self.task_events = TaskEventBuffer(runtime, config, lambda: self.job_id, gcs_address)
        completion = Completion(
            self.ownership,
            self.streams,
            self.set_object,
            refs.hold_contained,
            self.results_failed,
            self.task_events,
        )
        self.completion = completion
        self.submitter = TaskSubmitter(runtime, config, self, completion, self.ownership.lineage)
        # Lost objects: other copies, or their tasks run again (recovery.py).
        self.recovery = Recovery(
            runtime,
            self.ownership,
            self.shared,
            self.submitter.submit,
            config.connect_timeout,
        )
        self.shared.on_lost = self.recovery.on_lost
        self.actor_submitter = ActorSubmitter(runtime, config, self, completion)
        self.handles = HandleCounts(
            runtime,
            self.gcs_request,
            self.actor_submitter.actor_collected,
            config.handle_grace_seconds,
        )
        # This process's runtime_env and those of the calls it makes (runtime_envs.py).
        self.runtime_envs = RuntimeEnvs(runtime, config, gcs_address)
        packer = ArgumentPacker(runtime, config, self.objects, self.shared, self._note_escaped)
        self.serialize_args = packer.pack
        submission = Submission(
            runtime,
            self.ownership,
            self.streams,
            packer,
            self.submitter,
            self.actor_submitter,
            self.runtime_envs,
            self.resolve_ref,
            self.keep_process,
            self.on_loop_thread,
            config.task_events_enabled,
        )
        self.submit_task = submission.submit_task
        self.submit_actor_call = submission.submit_actor_call
        self.create_actor = submission.create_actor
        waiting = Waiting(
            self.objects,
            runtime,
            self.shared,
            self.blocking,
            self.resolve_ref,
            self.cancel,
            self.streams,
        )
        self.waiting = waiting
        self.get = waiting.get
        self.wait = waiting.wait
        self.get_async = waiting.get_async
        self.metrics = MetricsReporter(self)  # reports to the node's /metrics (metrics.py)
        runtime.call_soon(self.metrics.start)

    def keep_forever(self, ref: Any) -> None:
        """Hold ref (and so its object) for as long as this process lives: it was pickled out
        of band, and whoever unpickles it later must still find its value."""
        if isinstance(ref, ObjectRef):  # (actor handles travel out of band as they are)
            self._kept_out_of_band[ref.id] = ref

    @property
    def address(self) -> str:
        return self.runtime.address

    # -- objects: values ------------------------------------------------------------------------

    def put(self, value: Any) -> Any:
        if isinstance(value, ObjectRef):
            raise TypeError("actorflow.put() of an ObjectRef is not allowed: pass the ref itself")
        wire, nested = serialization.serialize_named(
            value, "the value given to actorflow.put()", views=True
        )
        self._note_escaped(nested)
        obj_id = ids.object_id(ids.new_task_id(), 0)
        wire = self.shared.finish(obj_id, wire)
        if wire[0] == serialization.SHARED:
            self.ownership.lineage.mark(obj_id, "PUT")  # a put has no task to run again
        self.objects.put(obj_id, wire)
        ref: ObjectRef[Any] = ObjectRef(obj_id, self.address)
        self.ownership.pin_to_object(obj_id, nested)
        return ref

    def put_error(self, wire: list) -> Any:
        """A ref whose value is the error wire holds (get raises it)."""
        obj_id = ids.object_id(ids.new_task_id(), 0)
        self.objects.put(obj_id, wire)
        return ObjectRef(obj_id, self.address)

    def _note_escaped(self, found: list) -> None:
        """Refs of ours were serialized: another process may borrow them from us, so the node
        must not end this worker for being idle."""
        for item in found:
            if getattr(item, "owner", None) == self.address:
                self.keep_process()
                return

    def keep_process(self) -> None:
        """This worker now owns something others may use: the node must not end it as idle."""
        if self.mode == "worker" and not self._kept:
            self._kept = True
            message = raylet.KeepWorker(self.worker_id)
            self.runtime.call_soon(self.runtime.tell, self.raylet_address, message)

    def free_in_store(self, obj_ids: list[bytes]) -> None:
        """Tell the node's store these objects are nobody's (any thread; unknown ids are
        ignored there)."""
        if obj_ids:
            self.runtime.call_soon(
                self.runtime.tell, self.raylet_address, store.Free(list(obj_ids))
            )

    def results_failed(self, obj_ids: list[bytes], wires: list) -> None:
        """A call ended in an error: an attempt may have stored results before it failed or
        its worker died; they are nobody's now."""
        if wires and all(serialization.is_error(w) for w in wires):
            self.free_in_store(obj_ids)

    def watch_node_deaths(self) -> None:
        """Once this process uses workers of other nodes: hear from the GCS when a node dies,
        so work on a node that died silently (no connection closed) is retried (loop thread)."""
        if self._watching_nodes:
            return
        self._watching_nodes = True
        self.runtime.loop.create_task(self._watch_node_deaths())

    def handle_ping(self, payload: Any, call: Call) -> bool:
        """Is this process still there? (the GCS asks after it restarts)"""
        return True

    async def _watch_node_deaths(self) -> None:
        known = 0
        while not self.runtime.closed:
            try:
                deaths = await self.gcs_request(
                    "gcs", "wait_node_deaths", gcs.WaitNodeDeaths(known)
                )
            except Exception:
                if self.runtime.closed:
                    return
                await asyncio.sleep(1.0)  # the GCS is away for now
                continue
            known += len(deaths)
            for node_id, address in deaths:
                self.submitter.node_died(address, f"node {node_id} at {address} died")

    # -- owners' and borrowers' messages (see ownership_io.py) ---------------------------------

    def handle_borrow_objects(self, payload: list, call: Call) -> None:
        obj_ids, borrower = decode(core.BorrowObjects, payload)
        self.refs.borrowers_added(obj_ids, borrower, call)

    def handle_release_objects(self, payload: list, call: Call | None) -> None:
        obj_ids, borrower = decode(core.ReleaseObjects, payload)
        self.ownership.borrowers_released(obj_ids, borrower)

    def handle_results_held(self, payload: list, call: Call | None) -> None:
        self.ownership.results_held(decode(core.ResultsHeld, payload).task_id)

    async def handle_get_object(self, payload: list, call: Call) -> list:
        return await self.refs.value_for_borrower(decode(core.GetObject, payload).obj_id)

    async def handle_recover_object(self, payload: list, call: Call) -> list:
        """A reader found no copy of an object we own (or borrow: asked on its behalf, as the
        caller of the task that reads it): a wire that works, or the error saying why not."""
        obj_id, wire, cause = decode(core.RecoverObject, payload)
        if not (
            len(wire) == 6
            and wire[0] == serialization.SHARED
            and isinstance(wire[1], str)
            and wire[3] == obj_id
        ):
            raise errors.MalformedMessageError(
                "recover_object: wire must be the SHARED wire of obj_id that the reader tried"
            )
        return await self.recovery.on_lost(wire, "", cause)

    def handle_object_copied(self, payload: list, call: Call) -> bool:
        copied = decode(core.ObjectCopied, payload)
        return self.shared.copied(copied.obj_id, copied.store)

    def handle_borrow_actor(self, payload: list, call: Call | None) -> None:
        actor_id, borrower = decode(core.BorrowActor, payload)
        self.handles.borrowed(actor_id, borrower, call)

    def handle_release_actor(self, payload: list, call: Call | None) -> None:
        actor_id, borrower = decode(core.ReleaseActor, payload)
        self.handles.released(actor_id, borrower)

    # -- cancellation ---------------------------------------------------------------------------

    def cancel(self, ref: Any, force: bool = False, recursive: bool = True) -> None:
        task_id = ids.task_id_of(ref.id)
        if ref.owner == self.address:
            self.runtime.call_soon(self._cancel_owned, task_id, force, recursive)
        else:
            message = core.CancelTask(task_id, force, recursive)
            self.runtime.call_soon(self.runtime.tell, ref.owner, message)

    def _cancel_owned(self, task_id: bytes, force: bool, recursive: bool) -> None:
        self.submitter.cancel(task_id, force, recursive)
        self.actor_submitter.cancel(task_id, force)

    def handle_cancel(self, payload: list, call: Call | None) -> None:
        task_id, force, recursive = decode(core.CancelTask, payload)
        self._cancel_owned(task_id, bool(force), bool(recursive))

    def handle_segments_gone(self, payload: list, call: Call | None) -> None:
        """The store dropped segments we were handed fds of (see shared_objects)."""
        self.shared.segments_gone(decode(core.SegmentsGone, payload).names)

    def handle_release_mappings(self, payload: Any, call: Call) -> list:
        """The store is short of room: let go of mappings no value uses (see shared_objects)."""
        return self.shared.release_idle()

    # -- inspection and output ----------------------------------------------------------------

    def handle_list_refs(self, payload: Any, call: Call) -> list:
        """This process's view of the objects it knows: what it owns (with its borrowers) and
        what it borrows, for `actorflow memory`."""
        return self.ownership.ref_rows(os.getpid())

    async def handle_list_tasks(self, payload: Any, call: Call) -> list:
        """The tasks and actor calls this process submitted that have not finished, for
        ``actorflow.util.state.list_tasks``; the ended ones it has buffered are reported to the
        GCS first, so the GCS's task events hold them when the lister asks it next."""
        await self.task_events.flush_all()
        return self.submitter.task_rows() + self.actor_submitter.call_rows()

    def handle_log(self, payload: list, call: Call | None) -> None:
        """Output of a worker, printed by the driver."""
        output.print_forwarded(*decode(core.WorkerOutput, payload))

    def handle_progress(self, payload: list, call: Call | None) -> None:
        """A distributed progress bar's state (tqdm_ray), drawn by the driver."""
        origin, state = decode(core.WorkerProgress, payload)
        progress_bars.manager().update(origin, state)
