"""What a process knows as an owner and a borrower, as a plain state object (sans-IO).

It holds the object table, the refs and handles each object keeps alive, the borrowers of our
objects, the refs sent in results until their receiver holds them, the borrow registrations not
sent yet and the fetches under way. It never touches a socket or a loop: a method that needs a
message sent returns it as a ``Send`` (a message of protocol/core.py and its address), and
worker/ownership_io.py sends it and schedules what has to wait. That is what its unit tests
(tests/test_ownership_state.py) drive directly.

Thread-safety is the table's (see table.py); everything else here is used on the runtime loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from actorflow._private import serialization
from actorflow._private.ownership.lineage import Lineage
from actorflow._private.ownership.table import MISSING, ObjectTable
from actorflow._private.protocol import core


class Send(NamedTuple):
    """A message to send (one of protocol/'s), and where."""

    address: str
    message: Any


class Resolution(NamedTuple):
    """What resolve() found: the value (wire), or that it is lost, or a request to fetch it."""

    wire: list | None = None
    lost: bool = False
    fetch: Send | None = None


WAIT = Resolution()  # the value is on its way: the callback runs when it arrives
LOST = Resolution(lost=True)


class Dropped(NamedTuple):
    """What follows from an object the table let go of: its shared-memory copy to release
    (and, if we own it, to free everywhere), and what to tell its owner once the borrows we
    registered are acknowledged."""

    shared: bool
    free_everywhere: bool
    release: Send | None


class Ownership:
    def __init__(self, address: str) -> None:
        self.address = address
        self.objects = ObjectTable()
        self.object_pins: dict[bytes, list] = {}  # refs and handles an object keeps alive
        self.borrowed_by: dict[str, set[bytes]] = {}  # borrower -> our objects it holds
        self.in_flight: dict[bytes, list] = {}  # task id -> refs sent in its results
        self.borrows_to_send: dict[str, list[bytes]] = {}  # owner -> refs to register
        self.fetching: set[bytes] = set()
        self.lineage = Lineage()  # the specs of our tasks, to re-create lost results

    def watch_drops(self, callback: Callable[[bytes, bool, str, list | None], None]) -> None:
        """callback(obj_id, owned, owner, wire), from any thread, for each object the table
        lets go of that concerns anyone but us (the shell then calls dropped() on its loop).
        An inline value we own that holds nothing is simply gone: nobody is told."""
        pins, shared = self.object_pins, serialization.SHARED
        lineage = self.lineage

        def table_dropped(obj_id: bytes, entry: Any) -> None:  # one per put: kept lean
            wire = entry.wire
            if entry.owned and (lineage.specs or lineage.evicted or lineage.no_lineage):
                lineage.note_dropped(obj_id)
            if entry.owned and obj_id not in pins and (wire is None or wire[0] != shared):
                return
            callback(obj_id, entry.owned, entry.owner, wire)

        self.objects.on_drop = table_dropped

    # -- objects and what they keep alive -------------------------------------------------------

    def pin_to_object(self, obj_id: bytes, values: list) -> None:
        """Keep values (refs and actor handles found in an object) alive while it lives."""
        if values:
            self.object_pins.setdefault(obj_id, []).extend(values)

    def dropped(self, obj_id: bytes, owned: bool, owner: str, wire: list | None) -> Dropped:
        """The object is gone here: what it held may go too."""
        self.object_pins.pop(obj_id, None)
        shared = wire is not None and wire[0] == serialization.SHARED
        release = None
        if not owned and owner:
            release = Send(owner, core.ReleaseObjects([obj_id], self.address))
        return Dropped(shared=shared, free_everywhere=owned and shared, release=release)

    def pin_for_call(self, refs: list) -> list[bytes]:
        """Count the objects of ours among a call's argument refs as pinned by it, until it is
        done (what `actorflow memory` shows)."""
        pin_ids = [r.id for r in refs if r.owner == self.address]
        for obj_id in pin_ids:
            self.objects.pin(obj_id)
        return pin_ids

    def unpin_for_call(self, pin_ids: Iterable[bytes]) -> None:
        for obj_id in pin_ids:
            self.objects.unpin(obj_id)

    def return_ids_pending(self, obj_ids: list[bytes]) -> None:
        """A call's results will arrive here: waiters may register for them at once."""
        for obj_id in obj_ids:
            self.objects.add_pending(obj_id)

    # -- values: where to get one ---------------------------------------------------------------

    def resolve(self, obj_id: bytes, owner: str, callback: Callable[[list], None]) -> Resolution:
        """Register callback for the value of obj_id (owned by owner). Returns the value if it
        is here, lost=True if we own it and it is gone, or the request to fetch it from its
        owner (only once per object: later callers just wait for that answer)."""
        wire = self.objects.wait_or_get(obj_id, callback)
        if wire is MISSING:
            if owner == self.address:
                return LOST
            self.objects.add_pending(obj_id, owned=False, owner=owner)
            wire = self.objects.wait_or_get(obj_id, callback)
        if wire is not None:
            return Resolution(wire=wire)
        if owner == self.address or obj_id in self.fetching:
            return WAIT
        self.fetching.add(obj_id)
        return Resolution(fetch=Send(owner, core.GetObject(obj_id)))

    def fetched(self, obj_id: bytes) -> None:
        """The owner answered a fetch (with the value or an error)."""
        self.fetching.discard(obj_id)

    # -- borrowing: refs to objects other processes own ----------------------------------------

    def queue_borrow(self, owner: str, obj_id: bytes) -> bool:
        """A ref to an object of owner's was made here: register it with the owner. True when
        it is the first queued for owner (the shell then schedules take_borrows)."""
        queued = self.borrows_to_send.get(owner)
        if queued is None:
            self.borrows_to_send[owner] = [obj_id]
            return True
        queued.append(obj_id)
        return False

    def take_borrows(self, owner: str) -> Send | None:
        """The registration to send to owner now (a request: its answer means registered)."""
        obj_ids = self.borrows_to_send.pop(owner, [])
        if not obj_ids:
            return None
        return Send(owner, core.BorrowObjects(obj_ids, self.address))

    def borrowers_added(self, obj_ids: list[bytes], borrower: str) -> bool:
        """A borrower registered refs to our objects. True the first time we hear of it (the
        shell then watches its connection, once)."""
        borrowed = self.borrowed_by.get(borrower)
        first = borrowed is None
        if borrowed is None:
            borrowed = self.borrowed_by[borrower] = set()
        for obj_id in obj_ids:
            if self.objects.add_borrower(obj_id, borrower):
                borrowed.add(obj_id)
        return first

    def borrowers_released(self, obj_ids: list[bytes], borrower: str) -> None:
        borrowed = self.borrowed_by.get(borrower, set())
        for obj_id in obj_ids:
            borrowed.discard(obj_id)
            self.objects.remove_borrower(obj_id, borrower)

    def borrower_lost(self, borrower: str) -> None:
        """The borrower's process is gone: it holds nothing any more."""
        for obj_id in self.borrowed_by.pop(borrower, set()):
            self.objects.remove_borrower(obj_id, borrower)

    # -- refs sent inside results ---------------------------------------------------------------

    def keep_in_flight(self, task_id: bytes, refs: list) -> None:
        """Refs sent in a result stay alive until the receiver holds them (results_held) or
        the shell's safety-net timer calls in_flight_expired."""
        self.in_flight.setdefault(task_id, []).extend(refs)

    def results_held(self, task_id: bytes) -> None:
        self.in_flight.pop(task_id, None)

    in_flight_expired = results_held

    # -- inspection -----------------------------------------------------------------------------

    def ref_rows(self, pid: int) -> list[dict[str, Any]]:
        """This process's view of the objects it knows, for `actorflow memory`."""
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
                    "pid": pid,
                    "owned": entry.owned,
                    "owner": self.address if entry.owned else entry.owner,
                    "where": where,
                    "size": size,
                    "error": wire is not None and wire[0] == serialization.ERROR,
                    "local_refs": entry.refs,
                    "pinned_by_tasks": entry.pinned,
                    "borrowers": sorted(entry.borrowers or ()),
                    "contained_refs": sum(
                        1 for v in self.object_pins.get(obj_id, ()) if hasattr(v, "owner")
                    ),
                }
            )
        return rows
