"""Lost objects: finding another copy, or making the value again from its lineage.

A reader that cannot pull an object (the node in its wire is dead, or no longer has it) asks
the object's owner (``on_lost``; a borrower sends ``recover_object``). The owner looks, in
order, at the copy named in its own table (its node may be alive after all), then at every
other store it knows holds a copy (made by pulls on other nodes); the first store that still
has it becomes the object's primary copy. With none left, the task that made the object is run
again from its kept spec (ownership/lineage.py), within the task's ``max_retries``, after its own
arguments that are lost too have been made again (recursively). An object that cannot be made
again (a put, an actor method's result, no retries left, lineage evicted or off) gets an
``ObjectReconstructionFailedError`` saying why, as its value.

Runs on the runtime loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.errors import PeerUnreachableError
from actorflow._private.node.transfer import describe
from actorflow._private.ownership.lineage import TaskSpec
from actorflow._private.ownership.state import Ownership
from actorflow._private.ownership.table import MISSING
from actorflow._private.protocol import core, store
from actorflow._private.runtime import Runtime
from actorflow._private.worker.object_ref import ObjectRef
from actorflow._private.worker.shared_objects import SharedObjects
from actorflow._private.worker.task_submitter import PendingTask

logger = logging.getLogger("actorflow.recovery")

SHARED = serialization.SHARED

_ERRORS: dict[str, type[errors.ObjectReconstructionFailedError]] = {
    "MAX_ATTEMPTS_EXCEEDED": errors.ObjectReconstructionFailedMaxAttemptsExceededError,
    "RETRIES_DISABLED": errors.ObjectReconstructionFailedMaxAttemptsExceededError,
    "LINEAGE_EVICTED": errors.ObjectReconstructionFailedLineageEvictedError,
}


class Recovery:
    def __init__(
        self,
        runtime: Runtime,
        ownership: Ownership,
        shared: SharedObjects,
        submit: Callable[[PendingTask], None],
        locate_timeout: float,
    ) -> None:
        self._runtime = runtime
        self._ownership = ownership
        self._objects = ownership.objects
        self._lineage = ownership.lineage
        self._shared = shared
        self._submit = submit
        self._locate_timeout = locate_timeout
        self._running: dict[bytes, asyncio.Future] = {}
        self.recreated = 0  # tasks run again to re-create a lost result
        self.promoted = 0  # copies made the primary one after the primary was lost

    # -- readers ------------------------------------------------------------------------------

    async def on_lost(self, wire: list, owner_hint: str, cause: str) -> list:
        """A read of wire failed (cause): a wire to try instead, from the owner (owner_hint:
        who to ask when this process does not know the object, e.g. a task's caller)."""
        obj_id = wire[3]
        owner = self._objects.owner_of(obj_id)
        if owner == "" or (owner is None and owner_hint == self._runtime.address):
            return await self.recover(obj_id, wire, cause)
        owner = owner or owner_hint
        if not owner:
            raise errors.ObjectLostError(cause)
        try:
            new = list(await self._runtime.ask(owner, core.RecoverObject(obj_id, wire, cause)))
        except PeerUnreachableError as exc:
            raise errors.OwnerDiedError(
                f"object {obj_id.hex()} is lost ({cause}) and its owner {owner} is gone: {exc}"
            ) from None
        if self._objects.is_known(obj_id):
            self._objects.replace_wire(obj_id, new)  # the next read goes there at once
        return new

    async def recover(self, obj_id: bytes, lost_wire: list, cause: str) -> list:
        """The wire of a copy of our object that is there, or of its value made again, or of
        the error saying why it cannot be had (one recovery per object at a time)."""
        running = self._running.get(obj_id)
        if running is None:
            running = asyncio.ensure_future(self._recover(obj_id, lost_wire, cause))
            self._running[obj_id] = running
            running.add_done_callback(lambda _f: self._running.pop(obj_id, None))
        return await asyncio.shield(running)

    async def _recover(self, obj_id: bytes, lost_wire: list, cause: str) -> list:
        wire = await self._value(obj_id)
        if wire is None:
            raise errors.ObjectLostError(
                f"object {obj_id.hex()} is lost ({cause}); its owner no longer holds it"
            )
        if wire[0] != SHARED or wire[1] != lost_wire[1] or wire[3] != obj_id:
            return wire  # it was found or made again since the reader's wire
        copy = await self._find_copy(obj_id, wire)
        if copy is not None:
            if copy[1] != wire[1]:
                self.promoted += 1
            self._objects.replace_wire(obj_id, copy)
            return copy
        spec = self._lineage.spec_of(obj_id)
        why = self._lineage.why_not(obj_id, owned=True)
        if why is not None or spec is None:
            reason, text = why or ("UNKNOWN", "no task that made it is kept")
            return self._fail(
                obj_id,
                _error(
                    reason,
                    f"object {obj_id.hex()} is lost ({cause}) and cannot be made again: {text}",
                ),
            )
        args = spec.task.args_wire
        if args[0] == SHARED and not self._objects.is_known(args[3]):
            return self._fail(
                obj_id,
                errors.ObjectReconstructionFailedError(
                    f"object {obj_id.hex()} is lost ({cause}) and cannot be made again: the "
                    f"arguments {spec.fn_name}() was given by value (over the inline limit, so "
                    f"kept in the object store) were freed once it ran; pass them as a ref "
                    f"(put, or a task's result) to let it be re-run",
                    "DEPENDENCY",
                ),
            )
        logger.info("re-running %s() to make lost object %s again", spec.fn_name, obj_id.hex())
        try:
            await self._run_again(spec, lost_wire[1], cause)
        except errors.ObjectReconstructionFailedError as failed:
            return self._fail(obj_id, failed)
        wire = await self._value(obj_id)
        if wire is None:
            raise errors.ObjectLostError(f"object {obj_id.hex()} was freed while made again")
        return wire

    def _fail(self, obj_id: bytes, error: BaseException) -> list:
        wire = serialization.serialize_error(error)
        self._objects.replace_wire(obj_id, wire)
        return wire

    async def _value(self, obj_id: bytes) -> list | None:
        """Our table's wire of obj_id, waiting if it is pending; None if it is not known."""
        future = self._runtime.loop.create_future()

        def arrived(wire: list) -> None:
            if not future.done():
                future.set_result(wire)

        wire = self._objects.wait_or_get(obj_id, arrived)
        if wire is MISSING:
            return None
        if wire is not None:
            return wire  # type: ignore[no-any-return]
        return await future  # type: ignore[no-any-return]

    # -- copies -------------------------------------------------------------------------------

    async def _find_copy(self, obj_id: bytes, wire: list) -> list | None:
        """The wire of a store's copy of obj_id: the one in wire if its node still has it,
        else any other the owner knows of (those that lack it are forgotten)."""
        stores: list[str] = []
        try:
            stores.append(await self._shared.nodes.store_of(wire[1], describe(obj_id, wire[1])))
        except errors.ObjectLostError:
            pass
        stores += [s for s in self._shared.copies_of(obj_id) if s not in stores]
        for address in stores:
            try:
                found = await asyncio.wait_for(
                    self._runtime.ask(address, store.Locate(obj_id)), self._locate_timeout
                )
            except (PeerUnreachableError, asyncio.TimeoutError, errors.ActorflowError):
                found = None
            if found:
                self._shared.forget_copy(obj_id, address)  # it is the primary one now
                return list(found)
            self._shared.forget_copy(obj_id, address)
        self._shared.nodes.forget(wire[1])
        return None

    # -- making it again ----------------------------------------------------------------------

    async def _run_again(self, spec: TaskSpec, lost_node: str | None, cause: str) -> None:
        """Submit spec's task again, once its arguments of ours that are lost too are being
        made again; the results it lost are pending meanwhile."""
        me = self._runtime.address
        old = spec.task
        slots, refs = [], []
        for position, dep_id, owner in spec.arg_refs:
            if owner == me:
                await self._ensure_argument(dep_id, spec, cause)
            ref: ObjectRef[Any] = ObjectRef(dep_id, owner)
            slots.append([position, ref])
            refs.append(ref)
        for obj_id in spec.return_ids:
            wire = self._objects.get_wire(obj_id)
            if not self._objects.is_known(obj_id):
                self._objects.add_pending(obj_id)  # a spec kept for another's argument
                spec.live += 1
            elif wire is not None and wire[0] == SHARED and wire[1] == lost_node:
                self._objects.reset(obj_id)
        task = PendingTask(
            task_id=old.task_id,
            fn_id=old.fn_id,
            fn_blob=old.fn_blob,
            fn_name=old.fn_name,
            args_wire=old.args_wire,
            slots=slots,
            num_returns=old.num_returns,
            resources=old.resources,
            retries_left=old.retries_left,
            retry_exceptions=old.retry_exceptions,
            pinned=refs,
            strategy=old.strategy,
            runtime_env=old.runtime_env,
            env_key=old.env_key,
            events=old.events,
        )
        task.attempt = old.attempt + 1
        self._lineage.started_again(spec, task)
        task.pin_ids = self._ownership.pin_for_call(refs)
        self.recreated += 1
        self._submit(task)

    async def _ensure_argument(self, obj_id: bytes, spec: TaskSpec, cause: str) -> None:
        """An argument (ours) of a task about to run again: if it is lost too, make it again
        first (it is then pending, and the task waits for it as for any argument)."""
        if self._objects.is_known(obj_id):
            wire = self._objects.get_wire(obj_id)
            if wire is None or wire[0] != SHARED:
                return  # on its way, or held inline here
            try:
                await self._shared.nodes.store_of(wire[1], describe(obj_id, wire[1]))
                return  # its node is alive (if it lost it, the task's read asks us again)
            except errors.ObjectLostError:
                pass
            wire = await self.recover(obj_id, wire, cause)
            if serialization.is_error(wire):
                raise _dependency_error(spec, obj_id, serialization.deserialize(wire))
            return
        # Its ref was dropped: only the spec of the task that made it is left, if any.
        dep = self._lineage.spec_of(obj_id)
        why = self._lineage.why_not(obj_id, owned=True)
        if dep is None or why is not None:
            text = why[1] if why else "it was freed and no task that made it is kept"
            raise _dependency_error(spec, obj_id, text)
        await self._run_again(dep, None, cause)


def _error(reason: str, message: str) -> errors.ObjectReconstructionFailedError:
    return _ERRORS.get(reason, errors.ObjectReconstructionFailedError)(message, reason)


def _dependency_error(
    spec: TaskSpec, obj_id: bytes, why: Any
) -> errors.ObjectReconstructionFailedError:
    """The task cannot run again: its argument obj_id cannot be had (why: text or error)."""
    if isinstance(why, errors.ObjectReconstructionFailedError):
        return type(why)(
            f"{spec.fn_name}() cannot run again: its argument {obj_id.hex()} is lost too: {why}",
            why.reason,
        )
    return errors.ObjectReconstructionFailedError(
        f"{spec.fn_name}() cannot run again: its argument {obj_id.hex()} cannot be had: {why}",
        "DEPENDENCY",
    )
