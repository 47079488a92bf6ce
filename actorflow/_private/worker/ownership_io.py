"""Ownership's IO: what the sans-IO state (ownership/state.py) asks for, done on the runtime.

Sends the messages the state returns, waits for the acknowledgements that order them (a release
goes out only after every borrow registered before it is acknowledged), runs its timers, and
turns values that arrive into callbacks. Refs and handles found in results are taken here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.ownership.state import Ownership, Send
from actorflow._private.ownership.table import MISSING
from actorflow._private.protocol import core
from actorflow._private.runtime import Call, Runtime
from actorflow._private.worker.actor_handle import ActorHandle
from actorflow._private.worker.object_ref import ObjectRef
from actorflow._private.worker.shared_objects import SharedObjects

logger = logging.getLogger("actorflow.core")


class OwnershipIO:
    def __init__(
        self,
        runtime: Runtime,
        ownership: Ownership,
        shared: SharedObjects,
        on_loop_thread: Callable[[], bool],
        in_flight_seconds: float,
    ) -> None:
        self._runtime = runtime
        self._ownership = ownership
        self._objects = ownership.objects
        self._shared = shared
        self._on_loop_thread = on_loop_thread
        # How long refs sent inside a result stay alive if the receiver never says it holds
        # them (it died): a safety net, not the normal path.
        self._in_flight_seconds = in_flight_seconds
        self._unacked_borrows: set[asyncio.Future] = set()
        ownership.watch_drops(self._object_dropped)

    def _send_oneway(self, send: Send) -> None:
        self._runtime.tell(send.address, send.message)

    def set_object(self, obj_id: bytes, wire: list) -> None:
        """Store a value that arrived (loop thread) and wake whoever waits for it."""
        for callback in self._objects.put(obj_id, wire):
            try:
                callback(wire)
            except Exception:
                logger.exception("object callback failed")

    def _object_dropped(self, obj_id: bytes, owned: bool, owner: str, wire: list | None) -> None:
        """The table let go of an object others know of (any thread)."""
        self._runtime.call_soon(self._after_drop, obj_id, owned, owner, wire)

    def _after_drop(self, obj_id: bytes, owned: bool, owner: str, wire: list | None) -> None:
        dropped = self._ownership.dropped(obj_id, owned, owner, wire)
        if dropped.shared:
            self._shared.release(obj_id)
        if self._runtime.closed:
            return
        if dropped.free_everywhere:  # in the store that made it and in every store with a copy
            self._shared.free_everywhere(obj_id, wire)  # type: ignore[arg-type]
        release = dropped.release
        if release is not None:
            self.after_borrows_settled([obj_id], lambda: self._send_oneway(release))

    # -- borrowing: refs to objects other processes own ----------------------------------------

    def add_local_ref(self, obj_id: bytes, owner: str, lost_wire: Callable[[], list]) -> None:
        """An ObjectRef was made in this process (any thread)."""
        if self._objects.add_ref(obj_id, owner == self._runtime.address, owner, lost_wire):
            if self._on_loop_thread():  # queued now, so that after_borrows_settled sees it
                self._queue_borrow(owner, obj_id)
            else:
                self._runtime.call_soon(self._queue_borrow, owner, obj_id)

    def _queue_borrow(self, owner: str, obj_id: bytes) -> None:
        if self._ownership.queue_borrow(owner, obj_id):
            self._runtime.loop.call_soon(self._send_borrows, owner)

    def _send_borrows(self, owner: str) -> None:
        message = self._ownership.take_borrows(owner)
        if message is None or self._runtime.closed:
            return
        future = self._runtime.ask(message.address, message.message)
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
        mapped = self._shared.settled(obj_ids)
        if mapped is not None:
            waiting.append(mapped)
        if self._ownership.borrows_to_send:  # registrations made this very iteration
            for owner in list(self._ownership.borrows_to_send):
                self._send_borrows(owner)
            waiting += [f for f in self._unacked_borrows if not f.done()]
        if not waiting:
            then()
            return
        gathered = asyncio.gather(*waiting, return_exceptions=True)
        gathered.add_done_callback(lambda _f: then())

    def borrowers_added(self, obj_ids: list[bytes], borrower: str, call: Call) -> None:
        if self._ownership.borrowers_added(obj_ids, borrower):
            # Watch the borrower's connection once, not once per request.
            call.on_caller_lost(lambda: self._ownership.borrower_lost(borrower))

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
        results_held), or in_flight_seconds pass (loop thread or any)."""
        refs = [r for r in nested if isinstance(r, ObjectRef)]
        if refs:
            self._runtime.call_soon(self._keep_in_flight, task_id, refs)

    def _keep_in_flight(self, task_id: bytes, refs: list) -> None:
        self._ownership.keep_in_flight(task_id, refs)
        self._runtime.loop.call_later(
            self._in_flight_seconds, self._ownership.in_flight_expired, task_id
        )

    def hold_contained(self, obj_ids: list, contained: list, sender: str, task_id: bytes) -> None:
        """A result holds these handles and refs: take them now, for as long as we keep it,
        then tell the sender it may let go of its own (loop thread)."""
        if not contained:
            return
        held: list = []
        has_refs = False
        for item in contained:
            if item[0] == "actor":
                held.append(ActorHandle(item[1], item[2], owner=item[3]))
            else:
                held.append(ObjectRef(item[1], item[2]))
                has_refs = True
        for obj_id in obj_ids:
            self._ownership.pin_to_object(obj_id, held)
        if has_refs and sender:
            self.after_borrows_settled(
                [], lambda: self._runtime.tell(sender, core.ResultsHeld(task_id))
            )

    # -- values: where they come from -----------------------------------------------------------

    def resolve_ref(self, ref: Any, callback: Callable[[list], None]) -> None:
        """Call callback(wire) once ref has a value (loop thread)."""
        found = self._ownership.resolve(ref.id, ref.owner, callback)
        if found.wire is not None:
            callback(found.wire)
        elif found.lost:
            callback(
                serialization.serialize_error(
                    errors.ObjectLostError(f"object {ref.id.hex()} was freed or never existed")
                )
            )
        elif found.fetch is not None:
            self._fetch(ref.id, found.fetch)

    def _fetch(self, obj_id: bytes, request: Send) -> None:
        """Ask the owner for a borrowed object's value (loop thread)."""
        future = self._runtime.ask(request.address, request.message)

        def done(f: asyncio.Future) -> None:
            self._ownership.fetched(obj_id)
            exc = f.exception()
            if exc is None:
                wire = f.result()
            elif isinstance(exc, PeerUnreachableError):
                wire = serialization.serialize_error(
                    errors.OwnerDiedError(
                        f"the owner of object {obj_id.hex()} ({request.address}) is gone: {exc}"
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

    async def value_for_borrower(self, obj_id: bytes) -> list:
        """A borrower wants the value of an object this process owns."""
        future = self._runtime.loop.create_future()

        def ready(wire: list) -> None:
            if not future.done():
                future.set_result(wire)

        wire = self._objects.wait_or_get(obj_id, ready)
        if wire is MISSING:
            raise errors.ObjectLostError(
                f"object {obj_id.hex()} is not known to its owner (it was freed)"
            )
        if wire is not None:
            return wire
        return await future
