"""Reference counting of actor handles across processes.

Every process counts the ActorHandle objects it holds per actor. A process that is not the
actor's owner registers as a borrower with the owner when its count goes from 0 to 1 and
deregisters when it drops back to 0 (or when its connection to the owner closes). The owner ends
the actor once its own count is zero and no borrower is left — after a short grace period, so that
a handle in flight to another process (inside task arguments or results) is registered by its
receiver first. What keeps a handle alive while it travels: the submitting process pins handles
found in a task's arguments until the task finishes, and the receiving process pins handles found
in a result for as long as it keeps that result.

Named and detached actors are not collected: they live until killed (or their owner exits).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from actorflow._private.protocol import core
from actorflow._private.protocol.actors import KillActor
from actorflow._private.runtime import Call, Runtime

logger = logging.getLogger("actorflow.handles")


class HandleCounts:
    def __init__(
        self,
        runtime: Runtime,
        gcs_request: Callable[[str, str, Any], asyncio.Future],
        on_collected: Callable[[str], None],
        grace_seconds: float,
    ) -> None:
        self.runtime = runtime
        self._gcs_request = gcs_request
        self._on_collected = on_collected  # the actor is being ended: what it pins may go
        self._grace_seconds = grace_seconds  # for handles in flight to be registered first
        self._lock = threading.Lock()
        self._local: dict[str, int] = {}
        self._owner: dict[str, str] = {}
        self._collectable: set[str] = set()  # owned here, unnamed, not detached
        self._borrowers: dict[str, set[str]] = {}
        self._watched: set[str] = set()  # borrower processes whose end we watch

    def owned_and_collectable(self, actor_id: str) -> None:
        with self._lock:
            self._collectable.add(actor_id)

    def added(self, actor_id: str, owner: str) -> None:
        """An ActorHandle was made in this process (any thread)."""
        with self._lock:
            count = self._local.get(actor_id, 0) + 1
            self._local[actor_id] = count
            self._owner[actor_id] = owner
        if count == 1 and owner and owner != self.runtime.address:
            self.runtime.call_soon(self._send, owner, "borrow", actor_id)

    def removed(self, actor_id: str) -> None:
        """An ActorHandle of this process was garbage-collected (any thread)."""
        with self._lock:
            count = self._local.get(actor_id, 0) - 1
            if count > 0:
                self._local[actor_id] = count
                return
            self._local.pop(actor_id, None)
            owner = self._owner.pop(actor_id, "")
        if owner and owner != self.runtime.address:
            self.runtime.call_soon(self._send, owner, "release", actor_id)
        elif actor_id in self._collectable:
            self.runtime.call_soon(self._check_later, actor_id)

    def _send(self, owner: str, what: str, actor_id: str) -> None:
        if not self.runtime.closed:
            message = core.BorrowActor if what == "borrow" else core.ReleaseActor
            self.runtime.tell(owner, message(actor_id, self.runtime.address))

    # -- owner side (loop thread) ---------------------------------------------------------------

    def borrowed(self, actor_id: str, borrower: str, call: Call | None) -> None:
        self._borrowers.setdefault(actor_id, set()).add(borrower)
        if call is not None:
            call.on_caller_lost(lambda: self.released(actor_id, borrower))
        else:  # a one-way message: no connection to watch, so watch the borrower's process
            self._watch(borrower)

    def _watch(self, borrower: str) -> None:
        """Release what borrower holds once it is gone (our connection to it closes or cannot
        be opened): a process killed never sends its releases."""
        if not borrower or borrower == self.runtime.address or borrower in self._watched:
            return
        self._watched.add(borrower)
        self.runtime.on_peer_lost(borrower, lambda: self._borrower_gone(borrower))
        opened = self.runtime.request(borrower, "core", "ping", None)  # opens the connection
        opened.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _borrower_gone(self, borrower: str) -> None:
        self._watched.discard(borrower)
        for actor_id in [a for a, who in self._borrowers.items() if borrower in who]:
            self.released(actor_id, borrower)

    def released(self, actor_id: str, borrower: str) -> None:
        borrowers = self._borrowers.get(actor_id)
        if borrowers is not None:
            borrowers.discard(borrower)
            if not borrowers:
                del self._borrowers[actor_id]
        self._check_later(actor_id)

    def _check_later(self, actor_id: str) -> None:
        self.runtime.loop.call_later(self._grace_seconds, self._collect_if_unused, actor_id)

    def _collect_if_unused(self, actor_id: str) -> None:
        with self._lock:
            if (
                actor_id not in self._collectable
                or self._local.get(actor_id)
                or self._borrowers.get(actor_id)
            ):
                return
            self._collectable.discard(actor_id)
        self._on_collected(actor_id)
        if not self.runtime.closed:
            # A request, resent while the GCS is restarting (a one-way message would be lost).
            self._gcs_request(
                "actors",
                "kill_actor",
                KillActor(actor_id, True, "every handle to it is gone (it went out of scope)"),
            ).add_done_callback(_log_if_failed)


def _log_if_failed(future: asyncio.Future) -> None:
    """Ending an out-of-scope actor is best effort: an unreachable GCS (which would end it
    with its owner anyway) is logged, not left as an unread error."""
    if not future.cancelled() and future.exception() is not None:
        logger.debug("an out-of-scope actor could not be ended: %s", future.exception())
