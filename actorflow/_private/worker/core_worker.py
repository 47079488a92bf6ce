"""The core worker: the owner side of every process (driver or worker).

It owns the refs this process creates, keeps their values in the object table, submits tasks
through the task submitter, fetches borrowed values from their owners, and answers owners' and
borrowers' messages as the ``core`` actor. Its public methods are called from user threads; the
rest runs on the runtime loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from actorflow._private import errors, ids, serialization
from actorflow._private.config import Config
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.ownership.handles import HandleCounts
from actorflow._private.ownership.table import MISSING, ObjectTable
from actorflow._private.runtime import Call, Runtime
from actorflow._private.worker.actor_submitter import ActorSubmitter
from actorflow._private.worker.shared_objects import SharedObjects
from actorflow._private.worker.streams import StreamTable
from actorflow._private.worker.task_submitter import STREAMING, PendingTask, TaskSubmitter
from actorflow.object_ref import ObjectRef, ObjectRefGenerator

logger = logging.getLogger("actorflow.core")

# How long a process keeps refs it sent inside a result alive, if the receiver never says that
# it holds them (it died): a safety net, not the normal path.
IN_FLIGHT_SECONDS = 60.0

# The task this code runs for (None in a driver's own code): parent of tasks it submits.
current_task_id: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "actorflow_current_task", default=None
)
# Its function or method name, for the prefix of forwarded output.
current_task_name: contextvars.ContextVar[str] = contextvars.ContextVar(
    "actorflow_current_task_name", default=""
)


def check_not_in_event_loop(what: str, instead: str = "") -> None:
    """Blocking calls refuse a thread whose event loop is running; instead says what to await."""
    if asyncio._get_running_loop() is None:  # no exception raised and caught per call
        return
    instead = instead or (
        "`await ref` (or `await asyncio.gather(*refs)` / `await asyncio.wait(...)`)"
    )
    raise errors.AsyncioContextError(
        f"{what}() blocks, and this thread is running an asyncio event loop: use {instead} "
        f"instead inside async code"
    )


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
        self.objects = ObjectTable()
        self.streams = StreamTable(self)
        self.submitter = TaskSubmitter(self)
        self.actor_submitter = ActorSubmitter(self)
        self.handles = HandleCounts(self)
        self._object_pins: dict[bytes, list] = {}  # refs and handles an object holds alive
        self.objects.on_drop = self._object_dropped
        self.shared = SharedObjects(self, spill_dir)
        self.extensions: dict[str, Any] = {"shm_prefix": shm_prefix} if shm_prefix else {}
        # Borrowing: registrations waiting to be sent (per owner), and those not yet answered.
        self._borrows_to_send: dict[str, list[bytes]] = {}
        self._unacked_borrows: set[asyncio.Future] = set()
        self._in_flight: dict[bytes, list] = {}  # task id -> refs sent in its results
        self._borrowed_by: dict[str, set[bytes]] = {}  # borrower -> our objects it holds
        self._fetching: set[bytes] = set()
        self._kept = False
        self._watching_nodes = False
        # Set by the worker process: called when a task thread starts and stops waiting.
        self.on_blocked: Callable[[], None] | None = None
        self.on_unblocked: Callable[[], None] | None = None

    @property
    def address(self) -> str:
        return self.runtime.address

    # -- objects: values ------------------------------------------------------------------------

    def set_object(self, obj_id: bytes, wire: list) -> None:
        """Store a value that arrived (loop thread) and wake whoever waits for it."""
        for callback in self.objects.put(obj_id, wire):
            try:
                callback(wire)
            except Exception:
                logger.exception("object callback failed")

    def put(self, value: Any) -> Any:
        if isinstance(value, ObjectRef):
            raise TypeError("actorflow.put() of an ObjectRef is not allowed: pass the ref itself")
        wire, nested = serialization.serialize_named(
            value, "the value given to actorflow.put()", views=True
        )
        self._note_escaped(nested)
        obj_id = ids.object_id(ids.new_task_id(), 0)
        wire = self.shared.finish(obj_id, wire)
        self.objects.put(obj_id, wire)
        ref = ObjectRef(obj_id, self.address)
        self.pin_to_object(obj_id, nested)
        return ref

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
            self.runtime.call_soon(
                self.runtime.send_oneway,
                self.raylet_address,
                "raylet",
                "keep_worker",
                [self.worker_id],
            )

    def pin_to_object(self, obj_id: bytes, values: list) -> None:
        """Keep values (actor handles found in an object) alive while the object lives."""
        if values:
            self._object_pins.setdefault(obj_id, []).extend(values)

    def _object_dropped(self, obj_id: bytes, entry: Any) -> None:
        """The table let go of an object (any thread)."""
        wire = entry.wire
        if (
            entry.owned
            and obj_id not in self._object_pins
            and (wire is None or wire[0] != serialization.SHARED)
        ):
            return  # an inline value nobody else knows of: nothing to tell anyone
        self.runtime.call_soon(self._after_drop, obj_id, entry.owned, entry.owner, wire)

    def _after_drop(self, obj_id: bytes, owned: bool, owner: str, wire: list | None) -> None:
        self._object_pins.pop(obj_id, None)  # refs and handles it held may go now
        shared = wire is not None and wire[0] == serialization.SHARED
        if shared:
            self.shared.release(obj_id)
        if self.runtime.closed:
            return
        if owned:
            if shared:  # in the store that made it and in every store holding a copy
                self.shared.free_everywhere(obj_id, wire)  # type: ignore[arg-type]
        elif owner:
            self.after_borrows_settled(
                [obj_id],
                lambda: self.runtime.send_oneway(
                    owner, "core", "release_objects", [[obj_id], self.address]
                ),
            )

    def free_in_store(self, obj_ids: list[bytes]) -> None:
        """Tell the node's store these objects are nobody's (any thread; unknown ids are
        ignored there)."""
        if obj_ids:
            self.runtime.call_soon(
                self.runtime.send_oneway, self.raylet_address, "store", "free", [list(obj_ids)]
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
                deaths = await self.gcs_request("gcs", "wait_node_deaths", [known])
            except Exception:
                if self.runtime.closed:
                    return
                await asyncio.sleep(1.0)  # the GCS is away for now
                continue
            known += len(deaths)
            for node_id, address in deaths:
                self.submitter.node_died(address, f"node {node_id} at {address} died")

    # -- borrowing: refs to objects other processes own ----------------------------------------

    def add_local_ref(self, obj_id: bytes, owner: str, lost_wire: Callable[[], list]) -> None:
        """An ObjectRef was made in this process (any thread)."""
        if self.objects.add_ref(obj_id, owner == self.address, owner, lost_wire):
            if self.on_loop_thread():  # queued now, so that after_borrows_settled sees it
                self._queue_borrow(owner, obj_id)
            else:
                self.runtime.call_soon(self._queue_borrow, owner, obj_id)

    def _queue_borrow(self, owner: str, obj_id: bytes) -> None:
        queued = self._borrows_to_send.get(owner)
        if queued is None:
            self._borrows_to_send[owner] = [obj_id]
            self.runtime.loop.call_soon(self._send_borrows, owner)
        else:
            queued.append(obj_id)

    def _send_borrows(self, owner: str) -> None:
        obj_ids = self._borrows_to_send.pop(owner, [])
        if not obj_ids or self.runtime.closed:
            return
        future = self.runtime.request(owner, "core", "borrow_objects", [obj_ids, self.address])
        self._unacked_borrows.add(future)
        future.add_done_callback(self._borrow_acked)

    def _borrow_acked(self, future: asyncio.Future) -> None:
        self._unacked_borrows.discard(future)
        if not future.cancelled():
            future.exception()  # the owner is gone: reading will say so

    def after_borrows_settled(self, obj_ids: list[bytes], then: Callable[[], None]) -> None:
        """Run then() once every borrow this process registered so far is acknowledged and the
        store has this process's mappings of obj_ids: only then may a release that lets an
        owner free something go out (loop thread)."""
        waiting = [f for f in self._unacked_borrows if not f.done()]
        mapped = self.shared.settled(obj_ids)
        if mapped is not None:
            waiting.append(mapped)
        if self._borrows_to_send:  # registrations made this very iteration
            for owner in list(self._borrows_to_send):
                self._send_borrows(owner)
            waiting += [f for f in self._unacked_borrows if not f.done()]
        if not waiting:
            then()
            return
        gathered = asyncio.gather(*waiting, return_exceptions=True)
        gathered.add_done_callback(lambda _f: then())

    def handle_borrow_objects(self, payload: list, call: Call) -> None:
        obj_ids, borrower = payload
        borrowed = self._borrowed_by.get(borrower)
        if borrowed is None:  # watch the borrower's connection once, not once per request
            borrowed = self._borrowed_by[borrower] = set()
            call.on_caller_lost(lambda: self._borrower_lost(borrower))
        for obj_id in obj_ids:
            if self.objects.add_borrower(obj_id, borrower):
                borrowed.add(obj_id)

    def handle_release_objects(self, payload: list, call: Call | None) -> None:
        obj_ids, borrower = payload
        borrowed = self._borrowed_by.get(borrower, set())
        for obj_id in obj_ids:
            borrowed.discard(obj_id)
            self.objects.remove_borrower(obj_id, borrower)

    def _borrower_lost(self, borrower: str) -> None:
        for obj_id in self._borrowed_by.pop(borrower, set()):
            self.objects.remove_borrower(obj_id, borrower)

    # -- refs and handles inside results --------------------------------------------------------

    def contained_in(self, nested: list) -> list:
        """What a result holds that its receiver must register before we may let go:
        ["actor", id, meta, owner] per actor handle, ["object", id, owner] per ref."""
        contained: list = []
        for item in nested:
            if isinstance(item, ObjectRef):
                contained.append(["object", item.id, item.owner])
            elif getattr(item, "_owner", ""):
                contained.append(["actor", item._actor_id, item._meta, item._owner])
        return contained

    def keep_in_flight(self, task_id: bytes, nested: list) -> None:
        """Refs sent in a result stay alive here until the receiver holds them (it says so with
        results_held), or IN_FLIGHT_SECONDS pass (loop thread or any)."""
        refs = [r for r in nested if isinstance(r, ObjectRef)]
        if refs:
            self.runtime.call_soon(self._keep_in_flight, task_id, refs)

    def _keep_in_flight(self, task_id: bytes, refs: list) -> None:
        self._in_flight.setdefault(task_id, []).extend(refs)
        self.runtime.loop.call_later(IN_FLIGHT_SECONDS, self._in_flight.pop, task_id, None)

    def handle_results_held(self, payload: list, call: Call | None) -> None:
        self._in_flight.pop(payload[0], None)

    def hold_contained(self, obj_ids: list, contained: list, sender: str, task_id: bytes) -> None:
        """A result holds these handles and refs: take them now, for as long as we keep it,
        then tell the sender it may let go of its own (loop thread)."""
        if not contained:
            return
        from actorflow.actor import ActorHandle

        held: list = []
        has_refs = False
        for item in contained:
            if item[0] == "actor":
                held.append(ActorHandle(item[1], item[2], owner=item[3]))
            else:
                held.append(ObjectRef(item[1], item[2]))
                has_refs = True
        for obj_id in obj_ids:
            self.pin_to_object(obj_id, held)
        if has_refs and sender:
            self.after_borrows_settled(
                [], lambda: self.runtime.send_oneway(sender, "core", "results_held", [task_id])
            )

    def handle_object_copied(self, payload: list, call: Call) -> bool:
        """[obj_id, store address]: another node's store made a copy of an object we own."""
        return self.shared.copied(payload[0], payload[1])

    def handle_borrow_actor(self, payload: list, call: Call | None) -> None:
        self.handles.borrowed(payload[0], payload[1], call)

    def handle_release_actor(self, payload: list, call: Call | None) -> None:
        self.handles.released(payload[0], payload[1])

    def resolve_ref(self, ref: Any, callback: Callable[[list], None]) -> None:
        """Call callback(wire) once ref has a value (loop thread)."""
        wire = self.objects.wait_or_get(ref.id, callback)
        if wire is MISSING:
            if ref.owner == self.address:
                callback(
                    serialization.serialize_error(
                        errors.ObjectLostError(f"object {ref.id.hex()} was freed or never existed")
                    )
                )
                return
            self.objects.add_pending(ref.id, owned=False, owner=ref.owner)
            wire = self.objects.wait_or_get(ref.id, callback)
        if wire is None:
            if ref.owner != self.address:
                self._fetch(ref.id, ref.owner)
        else:
            callback(wire)

    def _fetch(self, obj_id: bytes, owner: str) -> None:
        """Ask the owner for a borrowed object's value (loop thread)."""
        if obj_id in self._fetching:
            return
        self._fetching.add(obj_id)
        future = self.runtime.request(owner, "core", "get_object", [obj_id])

        def done(f: asyncio.Future) -> None:
            self._fetching.discard(obj_id)
            exc = f.exception()
            if exc is None:
                wire = f.result()
            elif isinstance(exc, PeerUnreachableError):
                wire = serialization.serialize_error(
                    errors.OwnerDiedError(
                        f"the owner of object {obj_id.hex()} ({owner}) is gone: {exc}"
                    )
                )
            else:
                wire = serialization.serialize_error(
                    exc
                    if isinstance(exc, errors.ActorflowError)
                    else errors.ObjectLostError(str(exc))
                )
            self.set_object(obj_id, wire)

        future.add_done_callback(done)

    async def handle_get_object(self, payload: list, call: Call) -> list:
        """A borrower wants the value of an object this process owns."""
        obj_id = payload[0]
        future = self.runtime.loop.create_future()

        def ready(wire: list) -> None:
            if not future.done():
                future.set_result(wire)

        wire = self.objects.wait_or_get(obj_id, ready)
        if wire is MISSING:
            raise errors.ObjectLostError(
                f"object {obj_id.hex()} is not known to its owner (it was freed)"
            )
        if wire is not None:
            return wire
        return await future

    # -- tasks ----------------------------------------------------------------------------------

    def serialize_args(self, fn_name: str, args: tuple, kwargs: dict) -> tuple[list, list, list]:
        """Top-level refs become slots the owner resolves before the task runs; the rest is
        serialized once (plain values skip pickling). Also returns the refs and handles found
        inside the arguments: the caller keeps them until the task is done."""
        slots: list = []
        arg_list = list(args)
        for i, value in enumerate(arg_list):
            if type(value) is ObjectRef:
                slots.append([i, value])
                arg_list[i] = None
        kw = dict(kwargs)
        for key, value in kwargs.items():
            if type(value) is ObjectRef:
                slots.append([key, value])
                kw[key] = None
        is_plain = serialization.is_plain
        if all(is_plain(v) for v in arg_list) and all(is_plain(v) for v in kw.values()):
            wire = [serialization.PLAIN, [arg_list, kw]]
            if _plain_size(arg_list, kw) <= self.config.inline_object_max_bytes:
                return wire, slots, []
            wire, ref = self._store_args(wire)
            return wire, slots, [ref]
        try:
            wire, nested = serialization.serialize_collecting_refs([arg_list, kw], views=True)
        except Exception as exc:
            raise self._unpicklable_argument(fn_name, arg_list, kw, exc) from exc
        self._note_escaped(nested)
        if serialization.size_of(wire) > self.config.inline_object_max_bytes:
            wire, ref = self._store_args(wire)
            nested = [*nested, ref]
        else:
            wire = serialization.inline(wire)
        return wire, slots, nested

    def _store_args(self, wire: list) -> tuple[list, Any]:
        """Large arguments go to the object store as an object of their own, kept for as long
        as the call: the returned ref is pinned with the call, and dropping it frees them."""
        obj_id = ids.object_id(ids.new_task_id(), 0)
        wire = self.shared.finish(obj_id, wire)
        self.objects.put(obj_id, wire)
        return wire, ObjectRef(obj_id, self.address)

    @staticmethod
    def _unpicklable_argument(
        fn_name: str, args: list, kwargs: dict, exc: Exception
    ) -> errors.SerializationError:
        named = [(f"argument {i}", v) for i, v in enumerate(args)]
        named += [(f"argument {k!r}", v) for k, v in kwargs.items()]
        for label, value in named:
            try:
                serialization.serialize(value)
            except Exception as inner:
                return errors.SerializationError(
                    f"could not serialize {label} of {fn_name}() (a {type(value).__name__}): "
                    f"{inner}"
                )
        return errors.SerializationError(f"could not serialize the arguments of {fn_name}(): {exc}")

    def submit_task(
        self,
        *,
        fn_id: bytes,
        fn_blob: bytes,
        fn_name: str,
        args: tuple,
        kwargs: dict,
        num_returns: int,
        resources: dict[str, float],
        max_retries: int,
        retry_exceptions: Any,
        strategy: Any = None,
    ) -> Any:
        """Submit a task from any thread; return its ref, list of refs, or generator."""
        args_wire, slots, nested = self.serialize_args(fn_name, args, kwargs)
        if isinstance(retry_exceptions, list):
            retry_exceptions = tuple(retry_exceptions)
        task = PendingTask(
            task_id=ids.new_task_id(),
            fn_id=fn_id,
            fn_blob=fn_blob,
            fn_name=fn_name,
            args_wire=args_wire,
            slots=slots,
            num_returns=num_returns,
            resources=resources,
            retries_left=max_retries,
            retry_exceptions=retry_exceptions,
            parent_task_id=current_task_id.get(),
            pinned=nested,
            pin_ids=self.pin_for_call(slots, nested),
            strategy=strategy,
        )
        if num_returns == STREAMING:
            self.streams.open(task.task_id)
            result: Any = ObjectRefGenerator(task.task_id, self.address)
        else:
            result = self._return_refs(task.return_ids, num_returns)
        self.runtime.call_soon(self.submitter.submit, task)
        return result

    # -- actors ---------------------------------------------------------------------------------

    def gcs_request(self, target: str, method: str, payload: Any) -> asyncio.Future:
        """A request to the GCS that rides out a GCS restart: while it cannot be reached it
        is sent again (every GCS request is safe to repeat) for up to gcs_reconnect_seconds.
        Loop thread only."""
        return self.runtime.loop.create_task(self._gcs_retrying(target, method, payload))

    async def _gcs_retrying(self, target: str, method: str, payload: Any) -> Any:
        return await self.runtime.request_until_reachable(
            self.gcs_address, target, method, payload, self.config.gcs_reconnect_seconds
        )

    async def request_from_any_loop(
        self, address: str, target: str, method: str, payload: Any
    ) -> Any:
        """A request awaited from any event loop: the runtime's own or a user's (to the GCS:
        riding out its restarts)."""

        async def ask() -> Any:
            if address == self.gcs_address:
                return await self._gcs_retrying(target, method, payload)
            return await self.runtime.request(address, target, method, payload)

        if asyncio.get_running_loop() is self.runtime.loop:
            return await ask()

        future = asyncio.run_coroutine_threadsafe(ask(), self.runtime.loop)
        return await asyncio.wrap_future(future)

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.runtime.loop_thread_id

    def call_control(
        self, address: str, target: str, method: str, payload: Any, timeout: float | None = 30.0
    ) -> Any:
        """A request to a system actor, waited for from a user thread."""
        if self.on_loop_thread():
            raise errors.AsyncioContextError(
                f"this call blocks and cannot run on actorflow's own event loop (inside an async "
                f"actor or async task): use the async variant ({method})"
            )

        async def ask() -> Any:
            if address == self.gcs_address:
                return await self._gcs_retrying(target, method, payload)
            return await self.runtime.request(address, target, method, payload)

        if address == self.gcs_address and timeout is not None:
            timeout += self.config.gcs_reconnect_seconds
        return asyncio.run_coroutine_threadsafe(ask(), self.runtime.loop).result(timeout)

    def create_actor(
        self, spec: dict[str, Any], wait: bool, keep: list | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Register the actor with the GCS once its arguments are resolved. With wait (named
        actors) the answer is waited for, so a taken name fails right here. What keep holds
        stays alive until the actor is dead for good."""
        self.keep_process()
        channel = self.actor_submitter.channel(spec["actor_id"])
        channel.pins = list(keep or [])
        channel.watching = True  # hold calls until the GCS has heard of the actor
        done = threading.Event()
        answer: list = []

        def send() -> None:
            future = self.gcs_request("actors", "create_actor", spec)
            channel.watching = False
            self.actor_submitter._pump(channel)
            self.actor_submitter.release_pins_at_death(channel)

            def replied(f: asyncio.Future) -> None:
                answer.append(f)
                done.set()

            future.add_done_callback(replied)

        def resolve_then_send() -> None:
            slots = spec["slots"]
            left = [len(slots)]
            if not slots:
                send()
                return
            for slot in slots:

                def resolved(wire: list, slot: list = slot) -> None:
                    slot[1] = wire
                    left[0] -= 1
                    if left[0] == 0:
                        send()

                self.resolve_ref(slot[1], resolved)

        self.runtime.call_soon(resolve_then_send)
        if not wait or self.on_loop_thread():
            return spec["actor_id"], spec["meta"]
        done.wait()
        future = answer[0]
        exc = future.exception()
        if exc is not None:
            self.runtime.call_soon(
                self.actor_submitter._declare_dead, channel, f"it could not be created: {exc}", None
            )
            raise exc
        actor_id, existed, meta = future.result()
        return actor_id, meta

    def _return_refs(self, obj_ids: list, num_returns: int) -> Any:
        """Refs for a call's results: one, a list, or None for num_returns=0."""
        for obj_id in obj_ids:
            self.objects.add_pending(obj_id)
        refs = [ObjectRef(obj_id, self.address) for obj_id in obj_ids]
        return refs[0] if num_returns == 1 else (refs or None)

    def pin_for_call(self, slots: list, nested: list) -> list[bytes]:
        """Count the owned objects a call's arguments use as pinned by it, until it is done
        (what `actorflow memory` shows; the refs the call holds are what keep them alive)."""
        refs = [slot[1] for slot in slots] + nested
        pin_ids = [r.id for r in refs if isinstance(r, ObjectRef) and r.owner == self.address]
        for obj_id in pin_ids:
            self.objects.pin(obj_id)
        return pin_ids

    def unpin_for_call(self, pin_ids: list[bytes]) -> None:
        for obj_id in pin_ids:
            self.objects.unpin(obj_id)
        pin_ids.clear()  # a call may be finished twice (a late reply after a retry)

    def submit_actor_call(self, actor_id: str, call: Any) -> Any:
        call.parent = current_task_id.get()
        call.pin_ids = self.pin_for_call(call.slots, call.pins)
        if call.num_returns == STREAMING:
            self.streams.open(call.task_id)
            result: Any = ObjectRefGenerator(call.task_id, self.address)
        else:
            result = self._return_refs(call.return_ids, call.num_returns)
        self.runtime.call_soon(self.actor_submitter.submit, actor_id, call)
        return result

    # -- objects: waiting -----------------------------------------------------------------------

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        check_not_in_event_loop("actorflow.get")
        if isinstance(refs, ObjectRef):
            return self._value(self._wait_wires([refs], timeout, "get")[0])
        if not isinstance(refs, (list, tuple)):
            raise TypeError(
                f"actorflow.get() takes an ObjectRef or a list of ObjectRefs, not "
                f"{type(refs).__name__}"
            )
        for ref in refs:
            if not isinstance(ref, ObjectRef):
                raise TypeError(
                    f"actorflow.get() got a {type(ref).__name__} in its list; "
                    f"every element must be an ObjectRef"
                )
        wires = self._wait_wires(list(refs), timeout, "get")
        self.shared.prefetch(wires)  # objects on other nodes: pulled at once, not one by one
        return [self._value(w) for w in wires]

    @staticmethod
    def _value(wire: list) -> Any:
        value = serialization.deserialize(wire)
        if serialization.is_error(wire):
            if isinstance(value, errors.TaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def _wait_wires(self, refs: list, timeout: float | None, what: str) -> list:
        """Block until every ref has a value, or one is an error; return the wires."""
        wires: list = [self.objects.get_wire(r.id) for r in refs]
        for wire in wires:
            if wire is not None and serialization.is_error(wire):
                raise self._value(wire)
        missing = [i for i, w in enumerate(wires) if w is None]
        if not missing:
            return wires
        waiter = _Waiter(needed=len(missing), wake_on_error=True)
        callbacks = []
        for index in missing:

            def arrived(wire: list, index: int = index) -> None:
                wires[index] = wire
                waiter.arrived(index, wire)

            callbacks.append((refs[index], arrived))
            self.runtime.call_soon(self.resolve_ref, refs[index], arrived)
        if not self._block(waiter, timeout):
            for ref, cb in callbacks:
                self.objects.remove_callback(ref.id, cb)
            raise errors.GetTimeoutError(
                f"actorflow.{what}() timed out after {timeout} s: {waiter.left} of {len(refs)} "
                f"objects not ready"
            )
        if waiter.error is not None:
            raise self._value(waiter.error)
        return wires

    def _block(self, waiter: _Waiter, timeout: float | None) -> bool:
        """Wait on a user thread; a task that blocks gives its CPU back meanwhile."""
        blocked = self.on_blocked is not None and current_task_id.get() is not None
        if blocked:
            self.on_blocked()  # type: ignore[misc]
        try:
            return waiter.wait(timeout)
        finally:
            if blocked:
                self.on_unblocked()  # type: ignore[misc]

    def wait(
        self,
        refs: list,
        num_returns: int = 1,
        timeout: float | None = None,
        fetch_local: bool = True,
    ) -> tuple[list, list]:
        check_not_in_event_loop("actorflow.wait")
        refs = self._check_wait_args(refs, num_returns, ObjectRef)
        ready_ids = {r.id for r in refs if self.objects.get_wire(r.id) is not None}
        if len(ready_ids) < num_returns and timeout != 0:
            waiter = _Waiter(needed=num_returns - len(ready_ids), wake_on_error=False)
            callbacks = []
            for ref in refs:
                if ref.id not in ready_ids:

                    def arrived(wire: list, obj_id: bytes = ref.id) -> None:
                        waiter.arrived(obj_id, wire)

                    callbacks.append((ref, arrived))
                    self.runtime.call_soon(self.resolve_ref, ref, arrived)
            self._block(waiter, timeout)
            for ref, cb in callbacks:
                self.objects.remove_callback(ref.id, cb)
            ready_ids |= waiter.keys()
        ready = [r for r in refs if r.id in ready_ids][:num_returns]
        chosen = {id(r) for r in ready}
        return ready, [r for r in refs if id(r) not in chosen]

    @staticmethod
    def _check_wait_args(refs: Any, num_returns: int, ref_type: type) -> list:
        if isinstance(refs, ref_type) or not isinstance(refs, (list, tuple)):
            raise TypeError("actorflow.wait() takes a list of ObjectRefs")
        refs = list(refs)
        for ref in refs:
            if not isinstance(ref, ref_type):
                raise TypeError(
                    f"actorflow.wait() got a {type(ref).__name__} in its list; "
                    f"every element must be an ObjectRef"
                )
        if len({r.id for r in refs}) != len(refs):
            raise ValueError("actorflow.wait() got the same ObjectRef twice")
        if not isinstance(num_returns, int) or num_returns < 1 or num_returns > len(refs):
            raise ValueError(
                f"num_returns must be between 1 and the number of refs "
                f"({len(refs)}), got {num_returns!r}"
            )
        return refs

    async def get_async(self, ref: Any) -> Any:
        """Await a ref's value from any event loop; cancelling the awaiter cancels the task."""
        wire = self.objects.get_wire(ref.id)
        if wire is None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            if loop is self.runtime.loop:

                def arrived(w: list) -> None:
                    if not future.done():
                        future.set_result(w)
            else:

                def arrived(w: list) -> None:
                    loop.call_soon_threadsafe(_resolve_future, future, w)

            self.runtime.call_soon(self.resolve_ref, ref, arrived)
            try:
                wire = await future
            except asyncio.CancelledError:
                self.objects.remove_callback(ref.id, arrived)
                self.cancel(ref, force=False, recursive=True)
                raise
        if self.shared.is_remote(wire):  # on another node: pulled here before it is read
            wire = await self.shared.localize_any_loop(wire)
        return self._value(wire)

    # -- cancellation ---------------------------------------------------------------------------

    def cancel(self, ref: Any, force: bool = False, recursive: bool = True) -> None:
        task_id = ids.task_id_of(ref.id)
        if ref.owner == self.address:
            self.runtime.call_soon(self._cancel_owned, task_id, force, recursive)
        else:
            self.runtime.call_soon(
                self.runtime.send_oneway, ref.owner, "core", "cancel", [task_id, force, recursive]
            )

    def _cancel_owned(self, task_id: bytes, force: bool, recursive: bool) -> None:
        self.submitter.cancel(task_id, force, recursive)
        self.actor_submitter.cancel(task_id, force)

    def handle_cancel(self, payload: list, call: Call | None) -> None:
        task_id, force, recursive = payload
        self._cancel_owned(task_id, bool(force), bool(recursive))

    def handle_release_mappings(self, payload: Any, call: Call) -> list:
        """The store is short of room: let go of mappings no value uses (see shared_objects)."""
        return self.shared.release_idle()

    # -- inspection -----------------------------------------------------------------------------

    def handle_list_refs(self, payload: Any, call: Call) -> list:
        """This process's view of the objects it knows: what it owns (with its borrowers) and
        what it borrows, for `actorflow memory`."""
        rows = []
        for obj_id, entry in self.objects.records():
            wire = entry.wire
            if wire is None:
                where, size = "pending", 0
            elif wire[0] == serialization.SHARED:
                where, size = "shared", serialization.size_of(wire)
            else:
                where, size = "memory", serialization.size_of(wire)
            rows.append(
                {
                    "object_id": obj_id.hex(),
                    "process": self.address,
                    "pid": os.getpid(),
                    "owned": entry.owned,
                    "owner": self.address if entry.owned else entry.owner,
                    "where": where,
                    "size": size,
                    "error": wire is not None and wire[0] == serialization.ERROR,
                    "local_refs": entry.refs,
                    "pinned_by_tasks": entry.pinned,
                    "borrowers": sorted(entry.borrowers or ()),
                    "contained_refs": sum(
                        1 for v in self._object_pins.get(obj_id, ()) if hasattr(v, "owner")
                    ),
                }
            )
        return rows

    # -- output of workers, printed by the driver ------------------------------------------------

    def handle_log(self, payload: list, call: Call | None) -> None:
        origin, is_stderr, text = payload
        stream = sys.stderr if is_stderr else sys.stdout
        prefix = f"({origin}) "
        lines = text.splitlines()
        try:
            stream.write("".join(prefix + line + "\n" for line in lines))
            stream.flush()
        except Exception:
            pass


class _Waiter:
    """Counts values arriving (on the runtime loop) and wakes one blocked user thread once
    enough have arrived, or at the first error when wake_on_error."""

    def __init__(self, needed: int, wake_on_error: bool) -> None:
        self.left = needed
        self.error: list | None = None
        self._wake_on_error = wake_on_error
        self._arrived: set = set()
        self._lock = threading.Lock()
        self._waker = threading.Lock()
        self._waker.acquire()
        self._woken = False

    def arrived(self, key: Any, wire: list) -> None:
        with self._lock:
            if key in self._arrived:
                return
            self._arrived.add(key)
            self.left -= 1
            failed = self._wake_on_error and serialization.is_error(wire)
            if failed and self.error is None:
                self.error = wire
            if (self.left <= 0 or failed) and not self._woken:
                self._woken = True
                self._waker.release()

    def wait(self, timeout: float | None) -> bool:
        return self._waker.acquire(timeout=-1 if timeout is None else max(0.0, timeout))

    def keys(self) -> set:
        with self._lock:
            return set(self._arrived)


def _plain_size(args: list, kwargs: dict) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in [*args, *kwargs.values()])


def _resolve_future(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)
