"""Unit tests of the object store's pieces that need no cluster: the bookkeeping (store_state.py),
the byte layout of an object (shm.py), anonymous segments and their table (segments.py) and the
socket that hands their fds out (segment_socket.py).

No cluster: files go to pytest's tmp dir, and the store's clock is a fake one that ticks on every
read, so least-recently-used orders are deterministic.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from actorflow._private import errors
from actorflow._private.node import segment_socket, segments, shm, store_state
from actorflow._private.node.store_state import (
    SEALED,
    SEGMENT_GRANULE,
    SPILLED,
    SPILLING,
    WRITING,
    Segment,
    StoreFullError,
    StoreState,
    segment_size,
)

pytestmark = pytest.mark.timeout(30)

G = SEGMENT_GRANULE
MiB = 1 << 20


def oid(n: int) -> bytes:
    """A 20-byte object id (the size of real ones)."""
    return n.to_bytes(20, "big")


# -- a StoreState whose invariants are checked after every call ---------------------------------


def check_invariants(state: StoreState) -> dict:
    stats = state.stats()
    assert stats["used"] == state.used
    assert stats["used"] == stats["in_use"] + stats["pooled"], stats
    assert stats["pooled"] <= state.pool_limit, stats
    assert 0 <= stats["pinned"] <= stats["in_use"], stats
    assert stats["spilled_bytes"] == sum(
        o.size for o in state.objects.values() if o.state == SPILLED
    ), stats
    assert stats["spilled_objects"] == sum(1 for o in state.objects.values() if o.state == SPILLED)
    assert stats["objects"] == sum(1 for o in state.objects.values() if not o.freed)
    segments = [s for s in state.pool] + [
        o.segment for o in state.objects.values() if o.segment is not None
    ]
    assert len({id(s) for s in segments}) == len(segments), "a segment is used twice"
    for obj_id, obj in state.objects.items():
        assert obj.obj_id == obj_id
        assert (obj.segment is None) == (obj.state == SPILLED), obj
    return stats


class Checked:
    """Proxy of a StoreState: every public method call is followed by check_invariants (also
    when the call raises: a failed call must leave consistent accounts too)."""

    def __init__(self, capacity: int, pool_fraction: float = 0.5) -> None:
        self.state = StoreState(capacity, pool_fraction)
        check_invariants(self.state)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.state, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            finally:
                check_invariants(self.state)

        return call


class TickClock:
    """time.monotonic for store_state: a new, larger value on every read."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> TickClock:
    fake = TickClock()
    monkeypatch.setattr(store_state, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def put(st: Checked, n: int, nbytes: int, owner: str = "owner") -> Segment:
    """A sealed object oid(n) of nbytes; its segment."""
    segment, _fresh = st.allocate(oid(n), nbytes, owner)
    st.seal(oid(n))
    return segment


# -- StoreState: segments and the pool ----------------------------------------------------------


def test_segment_size_rounds_up_to_granule():
    assert segment_size(0) == G
    assert segment_size(1) == G
    assert segment_size(G) == G
    assert segment_size(G + 1) == 2 * G
    assert segment_size(10 * G - 3) == 10 * G


def test_allocate_seal_free_pools_segment_and_same_size_reuses_it():
    st = Checked(100 * G)
    segment, fresh = st.allocate(oid(1), 3 * G - 5, "owner")
    assert fresh is True
    assert segment.capacity == 3 * G
    assert st.objects[oid(1)].state == WRITING
    assert st.stats()["pinned"] == 3 * G  # being written
    st.seal(oid(1))
    assert st.objects[oid(1)].state == SEALED
    assert st.stats() == {
        "capacity": 100 * G,
        "used": 3 * G,
        "in_use": 3 * G,
        "pooled": 0,
        "pinned": 0,
        "objects": 1,
        "spilled_objects": 0,
        "spilled_bytes": 0,
        "spill_count": 0,
    }

    assert st.free(oid(1)) == []  # pooled, nothing to unlink
    assert oid(1) not in st.objects
    assert st.pool == [segment]
    stats = st.stats()
    assert (stats["used"], stats["in_use"], stats["pooled"], stats["objects"]) == (
        3 * G,
        0,
        3 * G,
        0,
    )

    again, fresh = st.allocate(oid(2), 3 * G - 5, "owner")
    assert fresh is False
    assert again is segment
    assert st.pool == []
    assert st.used == 3 * G  # reuse costs nothing more
    assert st.objects[oid(2)].segment is segment


@pytest.mark.parametrize(
    ("nbytes", "reused"),
    [
        (4 * G, True),
        (4 * G - 1, True),
        (2 * G, True),  # exactly half: still reused
        (G + 1, True),  # its own segment would be 2 granules: half of 4
        (G, False),  # less than half
        (1, False),
        (4 * G + 1, False),  # larger than the segment
        (40 * G, False),
    ],
)
def test_pooled_segment_reused_only_for_about_its_size(nbytes, reused):
    st = Checked(100 * G)
    segment = put(st, 1, 4 * G)
    st.free(oid(1))
    got, fresh = st.allocate(oid(2), nbytes, "owner")
    assert (got is segment) == reused
    assert fresh is (not reused)
    assert st.pool == ([] if reused else [segment])
    assert st.used == 4 * G + (0 if reused else segment_size(nbytes))


def test_allocate_takes_the_smallest_pooled_segment_that_fits():
    st = Checked(100 * G, pool_fraction=1.0)
    big, mid, small = put(st, 1, 8 * G), put(st, 2, 5 * G), put(st, 3, 3 * G)
    for n in (1, 2, 3):
        st.free(oid(n))
    got, fresh = st.allocate(oid(4), 4 * G, "owner")  # fits in mid (5) and big (8): takes mid
    assert (got, fresh) == (mid, False)
    assert st.pool == [big, small]


def test_allocate_twice_the_same_id_is_refused():
    st = Checked(100 * G)
    st.allocate(oid(1), G, "owner")
    with pytest.raises(ValueError, match="already in the store"):
        st.allocate(oid(1), G, "owner")


def test_pool_limit_respected_segments_beyond_it_are_unlinked():
    st = Checked(10 * G, pool_fraction=0.5)
    assert st.pool_limit == 5 * G
    a, b, c = put(st, 1, 3 * G), put(st, 2, 3 * G), put(st, 3, 2 * G)
    assert st.free(oid(1)) == []
    assert st.pool == [a]
    assert st.free(oid(2)) == [b]  # 3 + 3 > 5: unlinked, not pooled
    assert st.used == 5 * G
    assert st.free(oid(3)) == []  # 3 + 2 == 5: fits the limit exactly
    assert st.pool == [a, c]
    assert st.stats()["pooled"] == 5 * G


def test_no_pool_when_pool_fraction_is_zero():
    st = Checked(10 * G, pool_fraction=0.0)
    segment = put(st, 1, G)
    assert st.free(oid(1)) == [segment]
    assert st.used == 0


def test_freeing_an_object_being_written_unlinks_its_segment():
    st = Checked(10 * G)
    segment, _ = st.allocate(oid(1), G, "owner")
    assert st.free(oid(1)) == [segment]  # never pooled: the writer still maps it
    assert st.pool == [] and st.used == 0
    st.seal(oid(1))  # the writer's late seal is a no-op
    assert oid(1) not in st.objects


def test_seal_and_abort():
    st = Checked(10 * G)
    segment, _ = st.allocate(oid(1), 2 * G, "owner")
    st.seal(oid(9))  # unknown: ignored
    assert st.abort(oid(9)) is None
    assert st.abort(oid(1)) is segment
    assert oid(1) not in st.objects and st.used == 0 and st.pool == []
    put(st, 2, G)
    before = st.objects[oid(2)].last_used
    st.seal(oid(2))  # sealing twice changes nothing
    assert st.objects[oid(2)].state == SEALED and st.objects[oid(2)].last_used == before


# -- StoreState: readers ------------------------------------------------------------------------


def test_free_with_readers_keeps_object_until_the_last_one_closes():
    st = Checked(10 * G)
    segment = put(st, 1, 2 * G)
    st.opened(oid(1), "r1")
    st.opened(oid(1), "r2")
    assert st.stats()["pinned"] == 2 * G  # mapped: not spillable
    assert st.free(oid(1)) == []
    obj = st.objects[oid(1)]
    assert obj.freed and obj.readers == {"r1", "r2"}
    assert st.pool == []
    assert st.stats()["objects"] == 0  # freed objects are not counted, but their bytes are
    assert st.stats()["in_use"] == 2 * G
    assert st.closed(oid(1), "r1") == []
    assert oid(1) in st.objects and st.pool == []
    assert st.closed(oid(1), "r2") == []
    assert oid(1) not in st.objects
    assert st.pool == [segment]
    assert st.closed(oid(1), "r2") == []  # late or repeated closes are harmless


def test_closing_without_free_keeps_the_object():
    st = Checked(10 * G)
    put(st, 1, G)
    st.opened(oid(1), "r1")
    assert st.closed(oid(1), "r1") == []
    assert oid(1) in st.objects and not st.objects[oid(1)].readers
    st.opened(oid(9), "r1")  # unknown ids are ignored
    assert st.closed(oid(9), "r1") == []


def test_reader_gone_frees_what_it_owned_and_drops_its_registrations():
    st = Checked(100 * G, pool_fraction=1.0)
    a = put(st, 1, G, owner="w1")  # owned by w1, unread
    b = put(st, 2, 2 * G, owner="w1")  # owned by w1, read by w2
    c = put(st, 3, 3 * G, owner="w2")  # owned by w2, read by w1
    d = put(st, 4, 4 * G, owner="w2")  # owned by w2, freed, read by w1 only
    st.opened(oid(2), "w2")
    st.opened(oid(3), "w1")
    st.opened(oid(4), "w1")
    st.free(oid(4))
    w_seg, _ = st.allocate(oid(5), G, "w1", writer="w1")  # being written by w1 when it died

    # What w1 owned is unlinked, never pooled: a borrower may know its location and map it
    # later, and must find it gone rather than reused for another object.
    assert st.reader_gone("w1") == [a, w_seg]
    assert oid(1) not in st.objects
    assert oid(4) not in st.objects  # its last reader went: not w1's, so pooled
    assert oid(5) not in st.objects
    assert st.pool == [d]
    b_obj, c_obj = st.objects[oid(2)], st.objects[oid(3)]
    assert b_obj.freed and b_obj.readers == {"w2"}  # kept for its reader
    assert not c_obj.freed and c_obj.readers == set()  # not w1's: kept, w1 no longer reads it
    assert st.reader_gone("nobody") == []

    assert st.closed(oid(2), "w2") == [b]  # its reader let go: unlinked, not pooled
    assert oid(2) not in st.objects
    assert st.free(oid(3)) == []
    assert st.pool[-1] is c
    assert st.objects == {}


def test_reader_gone_aborts_what_it_was_writing_for_another_owner():
    st = Checked(100 * G, pool_fraction=1.0)
    segment, _ = st.allocate(oid(1), G, "caller", writer="worker")
    assert st.reader_gone("worker") == [segment]
    assert oid(1) not in st.objects and st.used == 0


# -- StoreState: making room --------------------------------------------------------------------


def test_make_room_with_nothing_to_do():
    st = Checked(10 * G, pool_fraction=1.0)
    put(st, 1, 4 * G)
    assert st.make_room(6 * G) == ([], [])  # fits
    put(st, 2, 6 * G)
    st.free(oid(2))
    assert st.used == 10 * G
    assert st.make_room(5 * G) == ([], [])  # the pooled 6 will be reused for it
    assert st.stats()["pooled"] == 6 * G
    segment, fresh = st.allocate(oid(3), 5 * G, "owner")
    assert not fresh and segment.capacity == 6 * G


def test_make_room_evicts_pooled_segments_oldest_first():
    st = Checked(8 * G, pool_fraction=1.0)
    segs = {n: put(st, n, 2 * G) for n in (1, 2, 3, 4)}
    for n in (2, 1, 4):
        st.free(oid(n))
    assert [s.pooled_at for s in st.pool] == sorted(s.pooled_at for s in st.pool)
    # Reorder the pooling times so that list order and age disagree: 4 oldest, then 2, then 1.
    segs[4].pooled_at, segs[2].pooled_at, segs[1].pooled_at = 1.0, 2.0, 3.0
    assert st.used == 8 * G
    unlink, spill = st.make_room(4 * G)  # no pooled segment fits 4: two of them must go
    assert unlink == [segs[4], segs[2]]
    assert spill == []
    assert st.pool == [segs[1]]
    assert st.used == 4 * G
    assert st.objects[oid(3)].state == SEALED  # pool first: nothing spilled
    _, fresh = st.allocate(oid(5), 4 * G, "owner")
    assert fresh


def test_make_room_spills_least_recently_used_sealed_unread_objects():
    st = Checked(10 * G, pool_fraction=0.0)
    st.allocate(oid(1), 2 * G, "owner")  # being written
    put(st, 2, 2 * G)
    st.opened(oid(2), "reader")  # mapped
    put(st, 3, 2 * G)  # sealed first ...
    put(st, 4, 2 * G)
    put(st, 5, 2 * G)
    st.opened(oid(3), "reader")  # ... but then read: more recent than 4 and 5
    st.closed(oid(3), "reader")
    assert st.used == 10 * G
    assert st.stats()["pinned"] == 4 * G

    unlink, spill = st.make_room(3 * G)  # needs 4 granules: two objects go, 4 then 5
    assert unlink == []
    assert [o.obj_id for o in spill] == [oid(4), oid(5)]
    assert all(o.state == SPILLING for o in spill)
    assert st.objects[oid(1)].state == WRITING
    assert st.objects[oid(2)].state == SEALED
    assert st.objects[oid(3)].state == SEALED
    assert st.stats()["pinned"] == 8 * G  # spilling objects cannot be spilled again
    assert st.used == 10 * G  # nothing is given back until the spills finish

    four, five = spill
    seg4 = four.segment
    assert st.spilled(four, "/spill/4", ok=True) == [seg4]  # unlinked, never pooled
    assert four.state == SPILLED and four.segment is None and four.spill_path == "/spill/4"
    stats = st.stats()
    assert stats["used"] == 8 * G
    assert stats["spilled_bytes"] == 2 * G and stats["spilled_objects"] == 1
    assert stats["spill_count"] == 1
    assert stats["objects"] == 5  # a spilled object is still an object

    seg5 = five.segment
    assert st.spilled(five, "/spill/5", ok=False) == []  # failed: back to sealed, kept
    assert five.state == SEALED and five.segment is seg5 and five.spill_path == ""
    assert st.used == 8 * G and st.stats()["spill_count"] == 1
    assert st.pool == []


def test_make_room_evicts_the_pool_then_spills():
    st = Checked(8 * G, pool_fraction=1.0)
    pooled = put(st, 1, G)
    put(st, 2, 3 * G)
    put(st, 3, 3 * G)
    st.allocate(oid(4), G, "owner")
    st.free(oid(1))
    assert st.used == 8 * G
    unlink, spill = st.make_room(2 * G)
    assert unlink == [pooled]
    assert [o.obj_id for o in spill] == [oid(2)]  # the pool was not enough; one spill is
    assert st.used == 7 * G
    st.spilled(spill[0], "/spill/2", ok=True)
    assert st.used == 4 * G
    _, fresh = st.allocate(oid(5), 2 * G, "owner")
    assert fresh


def test_store_full_when_the_request_exceeds_capacity():
    st = Checked(8 * G)
    put(st, 1, G)
    with pytest.raises(StoreFullError) as info:
        st.make_room(8 * G + 1)
    err = info.value
    assert (err.asked, err.capacity, err.pinned, err.used) == (9 * G, 8 * G, 0, G)
    assert err.args == (9 * G, 8 * G, 0, G)
    assert st.objects[oid(1)].state == SEALED
    with pytest.raises(StoreFullError) as info:
        st.allocate(oid(2), 8 * G, "owner")  # 1 + 8 > 8
    assert (info.value.asked, info.value.capacity, info.value.used) == (8 * G, 8 * G, G)
    assert oid(2) not in st.objects


def test_store_full_when_nothing_can_be_spilled():
    st = Checked(6 * G)
    st.allocate(oid(1), 2 * G, "owner")  # being written
    put(st, 2, 2 * G)
    st.opened(oid(2), "reader")  # mapped
    put(st, 3, 2 * G)  # spillable, but not enough on its own
    with pytest.raises(StoreFullError) as info:
        st.make_room(3 * G + 1)
    err = info.value
    assert (err.asked, err.capacity, err.pinned, err.used) == (4 * G, 6 * G, 4 * G, 6 * G)
    # The object tentatively chosen for spilling is sealed again.
    assert st.objects[oid(3)].state == SEALED
    assert st.stats()["pinned"] == 4 * G
    # With the spillable one gone nothing at all can be spilled.
    _, spill = st.make_room(2 * G)
    assert [o.obj_id for o in spill] == [oid(3)]
    st.spilled(spill[0], "/spill/3", ok=True)
    put(st, 4, 2 * G)
    st.opened(oid(4), "reader")
    with pytest.raises(StoreFullError) as info:
        st.make_room(1)
    err = info.value
    assert (err.asked, err.capacity, err.pinned, err.used) == (G, 6 * G, 6 * G, 6 * G)


def test_failed_make_room_does_not_lose_pooled_segments():
    st = Checked(6 * G, pool_fraction=1.0)
    st.allocate(oid(1), 4 * G, "owner")  # being written: pinned
    pooled = put(st, 2, 2 * G)
    st.free(oid(2))
    with pytest.raises(StoreFullError):
        st.make_room(4 * G)  # evicting the pool (2) is not enough and nothing can be spilled
    # Either the pool is left as it was, or the segments it lost are handed back somehow;
    # the store has no other record of them.
    assert st.pool == [pooled]
    assert st.used == 6 * G


def test_free_while_spilling_releases_when_the_spill_completes():
    st = Checked(4 * G, pool_fraction=1.0)
    segment = put(st, 1, 2 * G)
    put(st, 2, 2 * G)
    _, spill = st.make_room(2 * G)
    (obj,) = spill
    assert obj.obj_id == oid(1)
    assert st.free(oid(1)) == []  # the spill is reading the segment: kept
    assert st.objects[oid(1)].freed and st.objects[oid(1)].state == SPILLING
    assert st.stats()["objects"] == 1
    assert st.spilled(obj, "/spill/1", ok=True) == [segment]  # unlinked, not pooled
    assert oid(1) not in st.objects
    assert st.pool == []
    assert st.dead_spill_files == ["/spill/1"]  # the freed object's spill file is to delete
    stats = st.stats()
    assert stats["spilled_bytes"] == 0 and stats["spill_count"] == 1
    assert stats["used"] == 2 * G


def test_freed_spilled_object_with_reader_goes_when_the_reader_closes():
    st = Checked(4 * G)
    put(st, 1, 2 * G)
    put(st, 2, 2 * G)
    _, (obj,) = st.make_room(2 * G)
    st.spilled(obj, "/spill/1", ok=True)
    st.opened(oid(1), "reader")  # reads the spill file
    assert st.stats()["pinned"] == 0  # nothing in shared memory is held by it
    assert st.free(oid(1)) == []
    assert oid(1) in st.objects and st.dead_spill_files == []
    assert st.stats()["spilled_bytes"] == 2 * G
    assert st.closed(oid(1), "reader") == []
    assert oid(1) not in st.objects
    assert st.dead_spill_files == ["/spill/1"]
    assert st.stats()["spilled_bytes"] == 0


def test_free_of_a_spilled_object():
    st = Checked(4 * G)
    put(st, 1, 2 * G)
    put(st, 2, 2 * G)
    _, (obj,) = st.make_room(G)
    st.spilled(obj, "/spill/1", ok=True)
    assert st.free(oid(1)) == []  # no segment left to unlink; its file is dead
    assert st.dead_spill_files == ["/spill/1"]
    assert st.stats()["spilled_bytes"] == 0 and st.stats()["spilled_objects"] == 0


def test_freed_while_spilling_and_the_spill_fails():
    st = Checked(4 * G, pool_fraction=0.0)
    segment = put(st, 1, 2 * G)
    put(st, 2, 2 * G)
    _, (obj,) = st.make_room(2 * G)
    assert st.free(oid(1)) == []
    released = st.spilled(obj, "/spill/1", ok=False)
    assert oid(1) not in st.objects
    assert released == [segment]
    assert st.used == 2 * G


def test_abort_while_spilling_keeps_accounts_right():
    st = Checked(4 * G)
    segment = put(st, 1, 2 * G)
    put(st, 2, 2 * G)
    _, (obj,) = st.make_room(2 * G)
    assert st.abort(oid(1)) is segment
    assert st.used == 2 * G
    st.spilled(obj, "/spill/1", ok=True)
    assert st.used == 2 * G
    assert st.spilled_bytes == 0


def test_abort_of_a_spilled_object():
    st = Checked(4 * G)
    put(st, 1, 2 * G)
    put(st, 2, 2 * G)
    _, (obj,) = st.make_room(G)
    st.spilled(obj, "/spill/1", ok=True)
    assert st.abort(oid(1)) is None  # no segment to unlink
    assert oid(1) not in st.objects
    assert st.spilled_bytes == 0
    assert st.dead_spill_files == ["/spill/1"]


# -- StoreState: adopt, expiry, stats -----------------------------------------------------------


def test_adopt_accounting():
    st = Checked(6 * G, pool_fraction=1.0)
    put(st, 1, 2 * G)
    segment = st.adopt(oid(2), 5 * G - 7, "w1", "wabc")
    assert (segment.name, segment.capacity) == ("wabc", 5 * G)
    obj = st.objects[oid(2)]
    assert (obj.state, obj.size, obj.owner, obj.segment) == (SEALED, 5 * G - 7, "w1", segment)
    stats = st.stats()
    assert stats["used"] == 7 * G > stats["capacity"]  # over capacity until room is made
    assert stats["in_use"] == 7 * G and stats["objects"] == 2 and stats["pinned"] == 0
    # Room is made by spilling, least recently used first.
    st.objects[oid(1)].last_used, obj.last_used = 2.0, 1.0
    _, spill = st.make_room(0)
    assert [o.obj_id for o in spill] == [oid(2)]
    assert st.spilled(spill[0], "/spill/2", ok=True) == [segment]
    assert st.used == 2 * G


def test_adopted_segment_is_unlinked_not_pooled_when_freed():
    st = Checked(100 * G, pool_fraction=1.0)
    segment = st.adopt(oid(1), G, "w1", "w" + oid(1).hex())
    assert st.free(oid(1)) == [segment]  # the writer may still map it for writing
    assert st.pool == [] and st.used == 0
    st.adopt(oid(2), G, "w1", "w" + oid(2).hex())
    st.opened(oid(2), "r")
    assert st.reader_gone("w1") == []
    assert st.closed(oid(2), "r")[0].name == "w" + oid(2).hex()
    assert st.used == 0


def test_make_room_gets_an_over_capacity_store_back_under_capacity():
    st = Checked(4 * G, pool_fraction=1.0)
    put(st, 1, G)
    st.free(oid(1))  # a small pooled segment
    st.adopt(oid(2), 4 * G, "w1", "wbig")
    assert st.used == 5 * G > st.capacity
    _, spill = st.make_room(0)
    for obj in spill:
        st.spilled(obj, "/spill/" + obj.obj_id.hex(), ok=True)
    assert st.used <= st.capacity


def test_expire_pool_gives_back_segments_pooled_before_the_cutoff():
    st = Checked(100 * G, pool_fraction=1.0)
    a, b, c = put(st, 1, G), put(st, 2, 2 * G), put(st, 3, 3 * G)
    for n in (1, 2, 3):
        st.free(oid(n))
    assert a.pooled_at < b.pooled_at < c.pooled_at
    assert st.expire_pool(a.pooled_at) == []  # strictly older only
    assert st.expire_pool(c.pooled_at) == [a, b]
    assert st.pool == [c]
    assert st.used == 3 * G
    assert st.expire_pool(c.pooled_at + 1) == [c]
    assert st.used == 0 and st.stats()["pooled"] == 0


def test_stats_stay_consistent_through_a_mixed_sequence():
    st = Checked(16 * G, pool_fraction=0.25)  # pool limit 4 granules
    put(st, 1, 3 * G, owner="a")
    put(st, 2, 2 * G, owner="b")
    st.allocate(oid(3), 4 * G, "a")
    st.opened(oid(2), "c")
    st.free(oid(1))  # pooled
    st.allocate(oid(4), 2 * G, "b")  # reuses the pooled 3
    st.seal(oid(4))
    st.seal(oid(3))
    put(st, 5, 5 * G, owner="c")
    put(st, 6, 2 * G, owner="a")
    assert st.used == 16 * G
    unlink, spill = st.make_room(3 * G)
    assert unlink == []
    for obj in spill:
        st.spilled(obj, "/spill/" + obj.obj_id.hex(), ok=True)
    st.reader_gone("a")
    st.free(oid(2))
    st.reader_gone("c")
    st.expire_pool(float("inf"))
    stats = st.stats()
    assert stats["used"] == stats["in_use"] + stats["pooled"]
    assert {o.owner for o in st.objects.values()} <= {"b"}
    st.reader_gone("b")
    stats = st.stats()
    assert stats["objects"] == 0 and stats["spilled_bytes"] == 0
    assert stats["used"] == stats["pooled"] <= st.pool_limit


# -- shm: layout --------------------------------------------------------------------------------


@pytest.mark.parametrize("data_len", [0, 1, 63, 64, 1000, 5 * MiB + 3])
@pytest.mark.parametrize(
    "buffer_lens",
    [
        [],
        [0],
        [1, 1, 1],
        [63, 64, 65],
        [MiB - 1, MiB, 1, MiB + 1],
        [3 * MiB + 5, 7, 2 * MiB, 0, 4096],
    ],
)
def test_layout_alignment(data_len, buffer_lens):
    offsets, total = shm.layout(data_len, buffer_lens)
    assert offsets[0] == shm.HEADER_BYTES
    assert len(offsets) == len(buffer_lens) + 1
    end = shm.HEADER_BYTES + data_len
    for start, length in zip(offsets[1:], buffer_lens, strict=True):
        align = shm.PAGE if length >= MiB else shm.ALIGN
        assert start % shm.ALIGN == 0
        assert start % align == 0
        assert end <= start < end + align  # after the previous part, with minimal padding
        end = start + length
    assert total == end


def test_header():
    head = shm.header(oid(7))
    assert len(head) == shm.HEADER_BYTES
    assert head.startswith(b"AFOBJ") and oid(7) in head


# -- shm: writing and reading an object ---------------------------------------------------------


def sample_value() -> dict:
    return {
        "small": np.arange(10, dtype=np.int32),
        "big": np.arange(2 * MiB // 8, dtype=np.float64),  # 2 MiB: page aligned
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "blob": bytes(range(256)) * 4,
        "text": "hello",
        "n": 7,
    }


def write_object(path: str, obj_id: bytes, value: Any, how: str) -> tuple[int, list[int], int]:
    """Store value in a new segment file at path as the store's writers do; returns
    (data_len, buffer_lens, total size)."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    buffer_lens = [r.nbytes for r in raws]
    offsets, total = shm.layout(len(data), buffer_lens)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, total)
    try:
        if how == "fd":
            shm.write_parts(fd, obj_id, data, raws, offsets)
        else:
            with mmap.mmap(fd, total) as mapping:
                shm.write_parts(mapping, obj_id, data, raws, offsets)
    finally:
        os.close(fd)
    return len(data), buffer_lens, total


@pytest.mark.parametrize("how", ["fd", "mmap"])
def test_write_then_map_and_load_round_trips(tmp_path, how):
    path = str(tmp_path / "actorflow-seg")
    value = sample_value()
    data_len, buffer_lens, total = write_object(path, oid(1), value, how)
    assert len(buffer_lens) == 3  # the three arrays went out of band
    assert os.path.getsize(path) == total

    mapping = shm.map_file(path, oid(1))
    assert mapping is not None
    got = shm.loads(mapping, data_len, buffer_lens)
    assert set(got) == set(value)
    for key in ("small", "big", "fortran"):
        np.testing.assert_array_equal(got[key], value[key])
        assert got[key].dtype == value[key].dtype
    assert got["fortran"].flags.f_contiguous
    assert got["blob"] == value["blob"] and got["text"] == "hello" and got["n"] == 7

    # The arrays are read-only views onto the mapping, aligned as the layout says.
    whole = np.frombuffer(mapping, dtype=np.uint8)
    base = whole.ctypes.data
    del whole
    for key in ("small", "big", "fortran"):
        array = got[key]
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array.flat[0] = 1
        address = array.ctypes.data
        assert base <= address and address + array.nbytes <= base + len(mapping)
        assert address % shm.ALIGN == 0
    assert got["big"].ctypes.data % shm.PAGE == 0

    # The mapping cannot be closed while values built on it are alive.
    with pytest.raises(BufferError):
        mapping.close()
    del got, array
    gc.collect()
    mapping.close()


def test_views_are_the_parts_at_their_offsets(tmp_path):
    path = str(tmp_path / "actorflow-seg")
    data_len, buffer_lens, _ = write_object(path, oid(1), sample_value(), "fd")
    mapping = shm.map_file(path, oid(1))
    assert mapping is not None
    data, buffers = shm.views(mapping, data_len, buffer_lens)
    assert data.readonly and data.nbytes == data_len
    assert [b.nbytes for b in buffers] == buffer_lens
    assert bytes(buffers[0]) == np.arange(10, dtype=np.int32).tobytes()
    data.release()
    for b in buffers:
        b.release()
    mapping.close()


def test_map_for_reading_checks_the_object_id(tmp_path):
    path = str(tmp_path / "actorflow-seg")
    write_object(path, oid(1), {"a": np.zeros(4)}, "fd")
    assert shm.map_file(path, oid(2)) is None  # the segment holds another object
    mapping = shm.map_file(path, oid(1))
    assert mapping is not None
    mapping.close()


def test_map_file_of_a_missing_file_is_none(tmp_path):
    assert shm.map_file(str(tmp_path / "spill" / oid(1).hex()), oid(1)) is None


def test_map_fd_of_anonymous_memory(tmp_path):
    """A segment as the store makes it: anonymous memory, written through its fd, mapped
    through another fd of it (as a reader gets one over the socket)."""
    value = {"x": np.arange(5)}
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    offsets, total = shm.layout(len(data), [r.nbytes for r in raws])
    fd = segments.anonymous_memory("test:s0", total)
    try:
        shm.write_parts(fd, oid(1), data, raws, offsets)
        assert shm.map_fd(fd, oid(2)) is None  # it holds another object
        reader = os.dup(fd)
        mapping = shm.map_fd(reader, oid(1))
        os.close(reader)
    finally:
        os.close(fd)
    assert mapping is not None  # the mapping outlives every fd of it
    got = shm.loads(mapping, len(data), [r.nbytes for r in raws])
    np.testing.assert_array_equal(got["x"], np.arange(5))
    del got
    gc.collect()
    mapping.close()


@pytest.mark.parametrize("fallback", [False, True])
def test_anonymous_memory_is_sized_and_has_no_name(monkeypatch, fallback):
    if fallback:  # no memfd: a file unlinked at once
        monkeypatch.setattr(segments, "memfd_available", lambda: False)
    before = set(os.listdir(segments.SHM_ROOT)) if os.path.isdir(segments.SHM_ROOT) else set()
    fd = segments.anonymous_memory("test:s1", 3 * G)
    try:
        assert os.fstat(fd).st_size == 3 * G
        assert os.fstat(fd).st_nlink == 0  # reachable by no path: it dies with its fds
        assert not os.get_inheritable(fd)
        target = os.readlink(f"/proc/self/fd/{fd}")
        if fallback:
            assert "(deleted)" in target or target.startswith(segments.SHM_ROOT)
        else:
            assert target.startswith("/memfd:actorflow:test:s1")
        after = set(os.listdir(segments.SHM_ROOT)) if os.path.isdir(segments.SHM_ROOT) else set()
        assert not {n for n in after - before if n.startswith("actorflow")}
    finally:
        os.close(fd)


def test_segment_table_hands_out_copies_and_tells_holders():
    table = segments.SegmentTable()
    table.create("n:s0", 4096)
    table.create("n:s1", 4096)
    assert "n:s0" in table and len(table) == 2
    mine = table.open("n:s0", holder="tcp://a")
    assert mine is not None and os.fstat(mine).st_size == 4096
    os.close(mine)
    sent: list = []
    table.send("n:s1", "tcp://b", lambda fd: sent.append(fd is not None))
    table.send("n:nope", "tcp://b", lambda fd: sent.append(fd))
    assert sent == [True, None]
    assert table.open("n:nope") is None
    assert table.drop(["n:s0", "n:s1"]) == {"tcp://a": ["n:s0"], "tcp://b": ["n:s1"]}
    assert len(table) == 0 and table.open("n:s0") is None
    # A writer's own segment waits for its adopt; a gone writer's is named for dropping.
    fd = segments.anonymous_memory("n:w1", 4096)
    table.give("n:w1", fd, "tcp://w")
    assert table.holder_gone("tcp://w") == ["n:w1"]
    assert table.adopted("n:w1") and table.holder_gone("tcp://w") == []
    assert not table.adopted("n:never")
    table.close()
    with pytest.raises(OSError):
        table.create("n:s2", 4096)


def test_segment_socket_serves_fds_to_this_user(tmp_path):
    table = segments.SegmentTable()
    table.create("n:s0", 8192)
    path = str(tmp_path / ("d" * 120) / "store.sock")  # longer than sun_path allows
    os.makedirs(os.path.dirname(path), mode=0o700)
    server = segment_socket.SegmentServer(table, path)
    server.start()
    client = segment_socket.SegmentClient(path, "tcp://me", keep=1)
    try:
        assert (os.stat(path).st_mode & 0o777) == 0o600
        fd = client.open("n:s0")
        assert fd is not None and os.fstat(fd).st_size == 8192
        os.pwrite(fd, b"hello", 0)
        os.close(fd)
        assert client.held() == 1
        assert client.open("n:missing") is None
        own = segments.anonymous_memory("n:w0", 4096)
        os.pwrite(own, b"mine", 0)
        client.give("n:w0", own)
        os.close(own)
        assert table.adopted("n:w0")
        check = table.open("n:w0")
        assert check is not None and os.pread(check, 4, 0) == b"mine"
        os.close(check)
        fd = client.open("n:w0")  # keep=1: n:s0's fd was let go
        assert fd is not None
        os.close(fd)
        assert client.held() == 1
        # The store dropped them: the holder is named, and forgets.
        assert table.drop(["n:s0", "n:w0"]) == {"tcp://me": ["n:s0", "n:w0"]}
        client.forget(["n:s0", "n:w0"])
        assert client.held() == 0 and client.open("n:s0") is None
        assert server.refused == 0
        # n:s0, n:missing (answered "no"), n:w0, n:s0 again once dropped (answered "no")
        assert server.served == 4
    finally:
        client.close()
        server.close()
        table.close()
    assert not os.path.exists(path)
    with pytest.raises(errors.ActorflowError, match="cannot be reached"):
        segment_socket.SegmentClient(path, "tcp://me").open("n:s0")


# -- shm: stale segments of older versions ------------------------------------------------------


def test_segment_prefix():
    assert shm.segment_prefix("sess1234") == "sess1234:"


def dead_pid() -> int:
    """A pid no process has: above the kernel's pid_max."""
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1


def test_remove_stale_segments(tmp_path, monkeypatch):
    monkeypatch.setattr(shm, "SHM_ROOT", str(tmp_path))
    dead, live, me = dead_pid(), os.getppid(), os.getpid()
    names = {
        f"actorflow-{dead}-sess-s0": False,  # removed
        f"actorflow-{dead}-sess-wabc": False,
        f"actorflow-{live}-sess-s0": True,  # its store still runs
        f"actorflow-{me}-sess-s1": True,  # keep_pid
        "actorflow-notapid-sess-s0": True,
        "other-123-s0": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert shm.remove_stale_segments(keep_pid=me) == 2
    assert {p.name for p in tmp_path.iterdir()} == {n for n, kept in names.items() if kept}
    assert shm.remove_stale_segments(keep_pid=me) == 0
