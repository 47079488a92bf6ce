"""Ownership as a plain state object: driven directly, with no sockets, loop or processes."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow._private import serialization
from actorflow._private.ownership.state import Ownership, Send
from actorflow._private.protocol import core

pytestmark = pytest.mark.timeout(60)

ME = "tcp://127.0.0.1:1000"
OTHER = "tcp://127.0.0.1:2000"
INLINE = [serialization.PLAIN, 42]
SHARED_WIRE = [serialization.SHARED, "node", "name", b"o" * 20, 8, []]


class Ref(NamedTuple):
    id: bytes
    owner: str


def owned_value(state: Ownership, obj_id: bytes, wire: list = INLINE) -> None:
    """An object this process put, held by one local ref."""
    state.objects.put(obj_id, wire)
    state.objects.add_ref(obj_id, True, ME)


def entry(state: Ownership, obj_id: bytes):
    return dict(state.objects.records())[obj_id]


OBJECTS = [bytes([i]) * 20 for i in range(3)]
BORROWERS = ["tcp://127.0.0.1:3001", "tcp://127.0.0.1:3002", "tcp://127.0.0.1:3003"]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(BORROWERS), st.sets(st.sampled_from(OBJECTS))),
        st.tuples(
            st.just("release"), st.sampled_from(BORROWERS), st.sets(st.sampled_from(OBJECTS))
        ),
        st.tuples(st.just("lost"), st.sampled_from(BORROWERS), st.just(set())),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_borrowers_follow_registrations_releases_and_losses(ops):
    state = Ownership(ME)
    dropped: list[bytes] = []
    state.objects.on_drop = lambda obj_id, _entry: dropped.append(obj_id)
    for obj_id in OBJECTS:
        owned_value(state, obj_id)
    model: dict[str, set[bytes]] = {}  # borrower -> what it holds
    for op, borrower, obj_ids in ops:
        if op == "add":
            # Its connection is watched the first time we hear of it (again after a loss).
            assert state.borrowers_added(sorted(obj_ids), borrower) is (borrower not in model)
            model.setdefault(borrower, set()).update(obj_ids)
        elif op == "release":
            state.borrowers_released(sorted(obj_ids), borrower)
            if borrower in model:
                model[borrower].difference_update(obj_ids)
        else:
            state.borrower_lost(borrower)
            model.pop(borrower, None)
        for obj_id in OBJECTS:
            expected = {b for b, held in model.items() if obj_id in held}
            assert state.objects.borrowers_of(obj_id) == expected
    assert not dropped  # the local refs still hold every object
    for obj_id in OBJECTS:
        state.objects.release_ref(obj_id)
    still_borrowed = {obj_id for held in model.values() for obj_id in held}
    assert set(dropped) == set(OBJECTS) - still_borrowed
    for borrower in list(model):
        state.borrower_lost(borrower)
    assert sorted(dropped) == sorted(OBJECTS)  # each dropped exactly once


def test_a_borrower_is_watched_once_until_it_is_lost():
    state = Ownership(ME)
    owned_value(state, OBJECTS[0])
    assert state.borrowers_added([OBJECTS[0]], OTHER) is True
    assert state.borrowers_added([OBJECTS[0]], OTHER) is False
    state.borrower_lost(OTHER)
    assert state.objects.borrowers_of(OBJECTS[0]) == set()
    assert state.borrowers_added([OBJECTS[0]], OTHER) is True


def test_borrowing_an_object_that_is_gone_registers_nothing():
    state = Ownership(ME)
    state.borrowers_added([OBJECTS[1]], OTHER)
    assert state.objects.borrowers_of(OBJECTS[1]) == set()
    assert state.borrowed_by[OTHER] == set()


def test_resolve_gives_the_value_or_says_it_is_lost():
    state = Ownership(ME)
    owned_value(state, OBJECTS[0])
    assert state.resolve(OBJECTS[0], ME, lambda w: None).wire == INLINE
    found = state.resolve(OBJECTS[1], ME, lambda w: None)
    assert found.lost and found.wire is None and found.fetch is None


def test_resolve_fetches_a_borrowed_value_once_and_wakes_every_waiter():
    state = Ownership(ME)
    first, second = [], []
    found = state.resolve(OBJECTS[2], OTHER, first.append)
    assert found.fetch == Send(OTHER, core.GetObject(OBJECTS[2]))
    again = state.resolve(OBJECTS[2], OTHER, second.append)
    assert again == (None, False, None)  # the fetch under way will answer both
    state.fetched(OBJECTS[2])
    for callback in state.objects.put(OBJECTS[2], INLINE, owned=False):
        callback(INLINE)
    assert first == second == [INLINE]
    assert OBJECTS[2] not in state.fetching


def test_a_pending_result_of_ours_is_waited_for_not_fetched():
    state = Ownership(ME)
    state.return_ids_pending([OBJECTS[0]])
    assert state.resolve(OBJECTS[0], ME, lambda w: None) == (None, False, None)


def test_borrow_registrations_go_out_in_one_message_per_owner():
    state = Ownership(ME)
    assert state.queue_borrow(OTHER, OBJECTS[0]) is True
    assert state.queue_borrow(OTHER, OBJECTS[1]) is False
    assert state.take_borrows(OTHER) == Send(
        OTHER, core.BorrowObjects([OBJECTS[0], OBJECTS[1]], ME)
    )
    assert state.take_borrows(OTHER) is None
    assert state.queue_borrow(OTHER, OBJECTS[2]) is True


def test_what_a_dropped_object_asks_for():
    state = Ownership(ME)
    borrowed = state.dropped(OBJECTS[0], False, OTHER, INLINE)
    assert borrowed.release == Send(OTHER, core.ReleaseObjects([OBJECTS[0]], ME))
    assert not borrowed.shared and not borrowed.free_everywhere
    shared = state.dropped(OBJECTS[1], True, "", SHARED_WIRE)
    assert shared.shared and shared.free_everywhere and shared.release is None
    copy = state.dropped(OBJECTS[2], False, OTHER, SHARED_WIRE)
    assert copy.shared and not copy.free_everywhere and copy.release is not None


def test_an_inline_value_of_ours_holding_nothing_concerns_nobody_when_it_goes():
    state = Ownership(ME)
    told: list[tuple] = []
    state.watch_drops(lambda *dropped: told.append(dropped))
    owned_value(state, OBJECTS[0])
    owned_value(state, OBJECTS[1], SHARED_WIRE)
    owned_value(state, OBJECTS[2])
    state.pin_to_object(OBJECTS[2], [Ref(b"x" * 20, OTHER)])
    state.objects.add_ref(b"b" * 20, False, OTHER)  # a borrowed ref
    for obj_id in [*OBJECTS, b"b" * 20]:
        state.objects.release_ref(obj_id)
    assert told == [
        (OBJECTS[1], True, "", SHARED_WIRE),  # its shared-memory copy is freed
        (OBJECTS[2], True, "", INLINE),  # what it holds may go
        (b"b" * 20, False, OTHER, None),  # its owner is told
    ]
    state.dropped(OBJECTS[2], True, "", INLINE)
    assert OBJECTS[2] not in state.object_pins  # what it held may go with it


def test_call_pins_count_only_our_objects_and_unpinning_twice_is_harmless():
    state = Ownership(ME)
    dropped: list[bytes] = []
    state.objects.on_drop = lambda obj_id, _entry: dropped.append(obj_id)
    owned_value(state, OBJECTS[0])
    pin_ids = state.pin_for_call([Ref(OBJECTS[0], ME), Ref(OBJECTS[1], OTHER)])
    assert pin_ids == [OBJECTS[0]]
    assert entry(state, OBJECTS[0]).pinned == 1
    state.objects.release_ref(OBJECTS[0])
    assert not dropped  # the running call still pins it
    state.unpin_for_call(pin_ids)
    state.unpin_for_call(pin_ids)  # a late reply after a retry finishes the call again
    assert dropped == [OBJECTS[0]]


def test_refs_sent_in_a_result_stay_until_the_receiver_holds_them():
    state = Ownership(ME)
    refs = [Ref(OBJECTS[0], ME)]
    state.keep_in_flight(b"t" * 16, refs)
    state.keep_in_flight(b"t" * 16, refs)
    assert state.in_flight[b"t" * 16] == refs + refs
    state.results_held(b"t" * 16)
    assert b"t" * 16 not in state.in_flight
    state.keep_in_flight(b"u" * 16, refs)
    state.in_flight_expired(b"u" * 16)
    assert not state.in_flight


def test_ref_rows_show_owner_borrowers_and_contained_refs():
    state = Ownership(ME)
    owned_value(state, OBJECTS[0])
    state.borrowers_added([OBJECTS[0]], BORROWERS[1])
    state.borrowers_added([OBJECTS[0]], BORROWERS[0])
    state.pin_to_object(OBJECTS[0], [Ref(OBJECTS[1], OTHER)])
    state.return_ids_pending([OBJECTS[2]])
    rows = {row["object_id"]: row for row in state.ref_rows(pid=7)}
    row = rows[OBJECTS[0].hex()]
    assert row["owner"] == ME and row["owned"] and row["pid"] == 7
    assert row["borrowers"] == [BORROWERS[0], BORROWERS[1]]
    assert (row["where"], row["local_refs"], row["contained_refs"]) == ("memory", 1, 1)
    assert rows[OBJECTS[2].hex()]["where"] == "pending"
