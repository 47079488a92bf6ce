"""The node's shared-memory object store (issue 4), through the public API.

Covered: zero-copy reads (values larger than ``inline_object_max_bytes`` are mapped read-only from
/memfd:actorflow:* memory, in the driver and in workers); freeing (the store's ``in_use`` goes
back to its baseline once no ref is left anywhere: driver, tasks, actors, refs nested in objects,
and readers let go of their mappings); spilling to disk when ``object_store_memory`` is exceeded
and ObjectStoreFullError when nothing can make room; refs inside objects keeping their targets
alive; errors for objects that can no longer be had; a leak test over 20,000 large task results;
awaiting large values.

The store's accounting is read from the driver's local cluster (``store_stats()``): "in_use" is
bytes of segments holding live objects; freed segments kept for reuse count as "pooled", not
"in_use". Tests take their baseline at their start: the shared cluster may still be letting go
of earlier tests' objects, so "freed" is checked as "back to the baseline or below".
"""

from __future__ import annotations

import asyncio
import gc
import os
import re

import numpy as np
import pytest
from helpers import gated, touch, wait_for_file

import actorflow
from actorflow import exceptions
from actorflow._private.worker import context

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
BIG = 4 * MiB  # well above the 100 KiB inline limit
SHM_PREFIX = "/memfd:actorflow:"  # how /proc/PID/maps names a store's segments


# -- helpers ------------------------------------------------------------------------------------


def big_array(nbytes: int = BIG, fill: float | None = None) -> np.ndarray:
    n = nbytes // 8
    if fill is None:
        return np.arange(n, dtype=np.float64)
    return np.full(n, fill, dtype=np.float64)


def expected_sum(nbytes: int = BIG, fill: float | None = None) -> float:
    return float(big_array(nbytes, fill).sum())


def _on_store(read):
    """read(store) on the runtime loop of the driver's local cluster, where the store changes."""
    session = context.session()

    async def run():
        return read(session.store)

    return session.loop_thread.run(run(), timeout=10)


def store_stats() -> dict:
    return _on_store(lambda store: store.state.stats())


def in_use() -> int:
    return store_stats()["in_use"]


def stored(ref) -> dict | None:
    """The store's record of ref's object (keys: freed, readers, where, ...), None if it has
    none."""
    rows = _on_store(lambda store: store.handle_list_objects(None, None))
    return next((row for row in rows if row["object_id"] == ref.hex()), None)


def store_files() -> int:
    """Bytes of the local store's segments (the memory its own fds keep alive)."""
    return _on_store(lambda store: store.segments.nbytes())


def borrowers_at_owner(obj_hex: str, owner: str) -> list[str]:
    """The processes the owner of an object counts as holding refs to it."""
    core = context.core_or_none()
    rows = core.call_control(owner, "core", "list_refs", None)
    return next((row["borrowers"] for row in rows if row["object_id"] == obj_hex), [])


def collect() -> None:
    """Drop refs that only reference cycles still hold (refs go at once otherwise)."""
    gc.collect()


def mapping_of(address: int) -> str:
    """The path of the file mapped at address in this process ('' for anonymous memory)."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip().removesuffix(" (deleted)") if len(fields) == 6 else ""
    return ""


def read_mappings(pid: int | str = "self") -> set[str]:
    """The segment files process pid has mapped for reading (read-only shared mappings)."""
    found = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith(SHM_PREFIX) and fields[1] == "r--s":
                    found.add(fields[5].strip().removesuffix(" (deleted)"))
    except OSError:  # the process ended
        pass
    return found


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# -- remote helpers -----------------------------------------------------------------------------


@actorflow.remote
def where_is(arr):
    """Where the task sees arr's buffer: (mapped file, writeable flag, sum)."""
    return mapping_of(arr.ctypes.data), bool(arr.flags.writeable), float(arr.sum())


@actorflow.remote
def where_is_nested(refs):
    arr = actorflow.get(refs[0])
    return mapping_of(arr.ctypes.data), float(arr.sum())


@actorflow.remote
def make_array(nbytes, fill=None):
    return big_array(nbytes, fill)


@actorflow.remote(num_returns=2)
def two_arrays(nbytes):
    return big_array(nbytes, 1.0), big_array(nbytes, 2.0)


@actorflow.remote
def stream_arrays(n, nbytes):
    for i in range(n):
        yield big_array(nbytes, float(i))


@actorflow.remote
def stream_arrays_then_touch(n, nbytes, done):
    yield from (big_array(nbytes, float(i)) for i in range(n))
    touch(done)


@actorflow.remote
def total(arr):
    return float(arr.sum())


@actorflow.remote
def total_of_nested(refs):
    return [float(actorflow.get(r).sum()) for r in refs]


@actorflow.remote
def gated_total(gate, arr):
    wait_for_file(gate)
    return float(arr.sum())


@actorflow.remote
def identity(x):
    return x


@actorflow.remote
def put_arrays(n, nbytes=BIG):
    """Refs owned by this task's worker, returned inside a list."""
    return [actorflow.put(big_array(nbytes, float(i))) for i in range(n)]


@actorflow.remote
def put_and_read(nbytes):
    """A put that never leaves the task."""
    ref = actorflow.put(big_array(nbytes))
    return float(actorflow.get(ref).sum())


@actorflow.remote(num_returns=2, max_retries=0)
def second_return_fails(how):
    """The first return value is stored before the second one fails to serialize (or its
    serialization ends the worker)."""
    return big_array(), Unpicklable() if how == "raise" else EndsTheProcess()


class Unpicklable:
    def __reduce__(self):
        raise TypeError("cannot be pickled")


class EndsTheProcess:
    def __reduce__(self):
        os._exit(1)


@actorflow.remote
def ones(nbytes):
    return np.ones(nbytes, dtype=np.uint8)


@actorflow.remote
def small(x):
    return x + 1


@actorflow.remote
class Holder:
    """Keeps what it is given in its state (refs inside a list stay refs)."""

    def __init__(self, kept=None):
        self.kept = kept

    def hold(self, items):
        self.kept = list(items)
        return len(self.kept)

    def totals(self):
        """Sums of the arrays held, directly or through refs."""
        return [
            float((actorflow.get(x) if isinstance(x, actorflow.ObjectRef) else x).sum())
            for x in self.kept
        ]

    def drop(self):
        self.kept = None
        return True


@actorflow.remote
class Owner:
    """Owns objects it puts (or tasks it submits) and hands out refs to them."""

    def make(self, nbytes):
        return [actorflow.put(big_array(nbytes, 7.0))]

    def make_pending(self, gate):
        return [gated.remote(gate, big_array(BIG, 8.0))]

    def pid(self):
        return os.getpid()


@actorflow.remote
class AsyncActor:
    async def total_of(self, refs):
        arr = await refs[0]
        return float(arr.sum()), mapping_of(arr.ctypes.data)

    async def total_of_task_result(self, nbytes):
        arr = await make_array.remote(nbytes, 2.0)
        return float(arr.sum())

    async def make(self, nbytes):
        await asyncio.sleep(0)
        return big_array(nbytes, 3.0)

    async def put(self, nbytes):
        return [actorflow.put(big_array(nbytes, 6.0))]


# -- 1. zero-copy -------------------------------------------------------------------------------


def test_gets_of_a_large_array_share_one_read_only_buffer(cluster):
    arr = big_array()
    ref = actorflow.put(arr)
    first, second = actorflow.get(ref), actorflow.get(ref)
    assert first.ctypes.data == second.ctypes.data
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0] = 1.0
    assert mapping_of(first.ctypes.data).startswith(SHM_PREFIX)
    np.testing.assert_array_equal(first, arr)


def test_put_copies_the_value(cluster):
    """The stored object does not change when the caller mutates its array afterwards."""
    arr = np.zeros(BIG // 8)
    ref = actorflow.put(arr)
    arr[:] = 1.0
    assert float(actorflow.get(ref).sum()) == 0.0


def test_small_values_stay_out_of_the_store(cluster):
    ref = actorflow.put(np.zeros(1000))
    np.testing.assert_array_equal(actorflow.get(ref), np.zeros(1000))
    assert stored(ref) is None
    assert stored(actorflow.put(big_array())) is not None


def test_task_reads_a_put_array_from_the_same_segment(cluster):
    ref = actorflow.put(big_array())
    driver_file = mapping_of(actorflow.get(ref).ctypes.data)
    task_file, writeable, got = actorflow.get(where_is.remote(ref))
    assert task_file.startswith(SHM_PREFIX)
    assert task_file == driver_file
    assert not writeable
    assert got == expected_sum()


def test_task_reads_a_ref_nested_in_a_list_without_a_copy(cluster):
    ref = actorflow.put(big_array())
    task_file, got = actorflow.get(where_is_nested.remote([ref]))
    assert task_file.startswith(SHM_PREFIX)
    assert got == expected_sum()


def test_large_argument_by_value_is_read_without_a_copy(cluster):
    task_file, writeable, got = actorflow.get(where_is.remote(big_array()))
    assert task_file.startswith(SHM_PREFIX)
    assert not writeable
    assert got == expected_sum()


def test_large_task_result_is_read_without_a_copy(cluster):
    ref = make_array.remote(BIG)
    first, second = actorflow.get(ref), actorflow.get(ref)
    assert mapping_of(first.ctypes.data).startswith(SHM_PREFIX)
    assert first.ctypes.data == second.ctypes.data
    assert not first.flags.writeable
    np.testing.assert_array_equal(first, big_array())


def test_large_result_of_an_async_actor_method(cluster, poll_until):
    """Written on the worker's event loop, where the writer makes its segment itself."""
    baseline = in_use()
    actor = AsyncActor.remote()
    value = actorflow.get(actor.make.remote(BIG))
    assert mapping_of(value.ctypes.data).startswith(SHM_PREFIX)
    assert float(value.sum()) == expected_sum(fill=3.0)
    del value
    collect()
    poll_until(lambda: in_use() <= baseline, message="async actor result not freed")
    actorflow.kill(actor)


# -- 2. freeing ---------------------------------------------------------------------------------


def test_put_objects_are_freed_when_their_refs_go(cluster, poll_until):
    baseline = in_use()
    refs = [actorflow.put(big_array(fill=float(i))) for i in range(3)]
    assert in_use() >= baseline + 3 * BIG
    assert [float(actorflow.get(r)[0]) for r in refs] == [0.0, 1.0, 2.0]
    del refs
    collect()
    poll_until(lambda: in_use() <= baseline, message="put objects not freed")


def test_value_read_outlives_its_ref(cluster, poll_until):
    """A value got from an object stays valid after its ref goes, even while freed segments of
    its size are being reused; the object's memory goes once the value goes too."""
    baseline = in_use()
    ref = actorflow.put(big_array(fill=1.0))
    arr = actorflow.get(ref)
    del ref
    collect()
    for i in range(6):
        actorflow.get(actorflow.put(big_array(fill=100.0 + i)))
    assert float(arr[0]) == float(arr[-1]) == 1.0 and float(arr.sum()) == expected_sum(fill=1.0)
    del arr
    collect()
    poll_until(lambda: in_use() <= baseline, message="object not freed after its value went")


def test_refs_passed_to_tasks_are_freed(cluster, poll_until):
    baseline = in_use()
    top, nested = actorflow.put(big_array()), actorflow.put(big_array(fill=1.0))
    assert actorflow.get(total.remote(top)) == expected_sum()
    assert actorflow.get(total_of_nested.remote([nested])) == [expected_sum(fill=1.0)]
    del top, nested
    collect()
    poll_until(lambda: in_use() <= baseline, message="objects read by tasks not freed")


def test_large_task_results_are_freed(cluster, poll_until):
    baseline = in_use()
    refs = [make_array.remote(BIG, float(i)) for i in range(3)]
    assert [float(actorflow.get(r)[0]) for r in refs] == [0.0, 1.0, 2.0]
    unread = make_array.remote(BIG)
    actorflow.wait([unread], timeout=30)
    first, second = two_arrays.remote(BIG)
    assert (float(actorflow.get(first)[0]), float(actorflow.get(second)[0])) == (1.0, 2.0)
    streamed = [float(actorflow.get(r)[-1]) for r in stream_arrays.remote(3, BIG)]
    assert streamed == [0.0, 1.0, 2.0]
    returned = actorflow.put(big_array())  # a by-value argument returned as the result
    np.testing.assert_array_equal(actorflow.get(identity.remote(returned)), big_array())
    del refs, unread, first, second, returned
    collect()
    poll_until(lambda: in_use() <= baseline, message="task results not freed")


def test_task_put_that_never_escapes_is_freed(cluster, poll_until):
    baseline = in_use()
    assert actorflow.get(put_and_read.remote(BIG)) == expected_sum()
    poll_until(lambda: in_use() <= baseline, message="the task's own object not freed")


def test_large_argument_by_value_is_freed_after_the_task(cluster, tmp_path, poll_until):
    baseline = in_use()
    gate = str(tmp_path / "gate")
    ref = gated_total.remote(gate, big_array())
    # The argument lives in the store while the call is pending.
    poll_until(lambda: in_use() >= baseline + BIG, message="argument not in the store")
    touch(gate)
    assert actorflow.get(ref) == expected_sum()
    poll_until(lambda: in_use() <= baseline, message="by-value argument not freed")


def test_cancelled_task_frees_its_argument(cluster, tmp_path, poll_until):
    baseline = in_use()
    gate = str(tmp_path / "gate")
    ref = gated_total.remote(gate, big_array())
    poll_until(lambda: in_use() >= baseline + BIG, message="argument not in the store")
    actorflow.cancel(ref)
    with pytest.raises((exceptions.TaskCancelledError, exceptions.WorkerCrashedError)):
        actorflow.get(ref, timeout=20)
    touch(gate)
    poll_until(lambda: in_use() <= baseline, message="cancelled task's argument not freed")


def test_object_held_by_an_actor_lives_until_both_let_go(cluster, poll_until):
    """While the actor holds a ref, the driver dropping its own must not free the object."""
    baseline = in_use()
    holder = Holder.remote()
    ref = actorflow.put(big_array())
    obj_hex = ref.hex()
    assert actorflow.get(holder.hold.remote([ref])) == 1
    del ref
    collect()
    assert actorflow.get(small.remote(1)) == 2  # the driver's release has been acted on
    assert [
        r
        for r in _on_store(lambda s: s.handle_list_objects(None, None))
        if r["object_id"] == obj_hex and not r["freed"]
    ], "freed while the actor holds it"
    assert actorflow.get(holder.totals.remote()) == [expected_sum()]
    assert in_use() >= baseline + BIG
    assert actorflow.get(holder.drop.remote())
    poll_until(lambda: in_use() <= baseline, message="object not freed after the actor let go")
    actorflow.kill(holder)


def test_object_held_by_an_actor_when_the_actor_lets_go_first(cluster, poll_until):
    baseline = in_use()
    holder = Holder.remote()
    ref = actorflow.put(big_array())
    actorflow.get(holder.hold.remote([ref]))
    assert actorflow.get(holder.drop.remote())
    assert actorflow.get(total.remote(ref)) == expected_sum()
    assert in_use() >= baseline + BIG
    del ref
    collect()
    poll_until(lambda: in_use() <= baseline, message="object not freed")
    actorflow.kill(holder)


def test_actor_keeping_a_by_value_argument(cluster, poll_until):
    """An actor keeps the array it was passed by value (a view onto the argument's segment):
    the segment is not reused under it, and goes once the actor lets go."""
    holder = Holder.remote()
    assert actorflow.get(holder.hold.remote([big_array(fill=1.0)])) == 1
    for i in range(6):  # same-size objects come and go: freed segments are reused
        assert actorflow.get(total.remote(big_array(fill=100.0 + i))) == expected_sum(
            fill=100.0 + i
        )
    assert actorflow.get(holder.totals.remote()) == [expected_sum(fill=1.0)]
    baseline = in_use()
    assert actorflow.get(holder.drop.remote())
    poll_until(lambda: in_use() <= baseline - BIG, message="kept argument not let go")
    actorflow.kill(holder)


def test_large_method_argument_holding_a_ref(cluster, poll_until):
    """A large by-value argument with a ref inside: the actor keeps both."""
    baseline = in_use()
    holder = Holder.remote()
    ref = actorflow.put(big_array(fill=1.0))
    assert actorflow.get(holder.hold.remote([ref, big_array(fill=2.0)])) == 2
    del ref
    collect()
    assert actorflow.get(holder.totals.remote()) == [expected_sum(fill=1.0), expected_sum(fill=2.0)]
    assert actorflow.get(holder.drop.remote())
    poll_until(lambda: in_use() <= baseline, message="not freed after the actor let go")
    actorflow.kill(holder)


def test_large_constructor_argument_lives_as_long_as_the_actor(cluster, poll_until):
    """As in Ray, the constructor's arguments are kept while the actor lives (a restart reads
    them again), and freed once its last handle goes."""
    baseline = in_use()
    holder = Holder.remote(big_array(fill=4.0))
    assert actorflow.get(holder.drop.remote())  # the actor lets go of its view
    assert actorflow.get(holder.hold.remote([big_array(fill=5.0)])) == 1
    assert actorflow.get(holder.drop.remote())
    # The method's argument goes; the constructor's stays.
    poll_until(lambda: in_use() < baseline + 2 * BIG, message="method argument not freed")
    assert in_use() >= baseline + BIG
    del holder
    collect()
    poll_until(lambda: in_use() <= baseline, message="constructor argument not freed")


def test_large_constructor_argument_is_freed_when_the_actor_is_killed(cluster, poll_until):
    baseline = in_use()
    holder = Holder.options(name="object-store-ctor-arg").remote(big_array(fill=4.0))
    assert actorflow.get(holder.drop.remote())
    actorflow.kill(holder)
    poll_until(
        lambda: in_use() <= baseline,
        timeout=5,
        message="constructor argument of a killed actor not freed",
    )


def test_items_of_a_dropped_generator_are_freed(cluster, tmp_path, poll_until):
    baseline = in_use()
    done = str(tmp_path / "done")
    generator = stream_arrays_then_touch.remote(3, BIG, done)
    del generator  # before any item arrives
    wait_for_file(done)
    poll_until(
        lambda: in_use() <= baseline, timeout=5, message="items of the dropped generator not freed"
    )


def test_results_stored_by_a_failed_task_are_freed(cluster, poll_until):
    baseline = in_use()
    first, second = second_return_fails.remote("raise")
    for ref in (first, second):
        with pytest.raises(exceptions.SerializationError):
            actorflow.get(ref, timeout=20)
    del first, second
    collect()
    poll_until(lambda: in_use() <= baseline, timeout=5, message="stored result leaked")


def test_results_of_a_worker_that_died_while_writing_them_are_freed(cluster, poll_until):
    baseline = in_use()
    first, second = second_return_fails.remote("exit")
    for ref in (first, second):
        with pytest.raises(exceptions.WorkerCrashedError):
            actorflow.get(ref, timeout=20)
    del first, second
    collect()
    poll_until(
        lambda: in_use() <= baseline and store_stats()["pinned"] == 0,
        timeout=5,
        message="partly written result leaked",
    )


def test_readers_let_go_of_their_mappings(cluster, poll_until, worker_processes):
    """Every process that read an object (driver, tasks, by ref or by value) unmaps it once
    nothing there uses it."""
    refs = [actorflow.put(big_array(fill=float(i))) for i in range(6)]
    values = actorflow.get(refs)
    files = {mapping_of(v.ctypes.data) for v in values}
    assert len(files) == 6 and files <= read_mappings()
    sums = [expected_sum(fill=float(i)) for i in range(6)]
    assert actorflow.get([total.remote(r) for r in refs]) == sums
    assert actorflow.get(total_of_nested.remote(refs)) == sums
    results = [where_is.remote(big_array(fill=9.0)) for _ in range(4)]
    files |= {f for f, _, _ in actorflow.get(results)}
    del refs, values, results
    collect()

    def still_mapped():
        return {
            pid: read_mappings(pid) & files
            for pid in [*worker_processes(), "self"]
            if read_mappings(pid) & files
        }

    poll_until(lambda: not still_mapped(), message="mappings left behind")


# -- 3. spilling and a full store ---------------------------------------------------------------


def test_spilling_keeps_every_value(make_cluster, poll_until):
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    size = 8 * MiB
    refs = [actorflow.put(big_array(size, float(i))) for i in range(14)]  # 112 MiB
    stats = store_stats()
    assert stats["spill_count"] > 0 and stats["spilled_objects"] > 0
    assert stats["used"] <= stats["capacity"]
    assert store_files() <= stats["used"]
    # A task reads the first (least recently used, so spilled) object; the driver reads all.
    assert stored(refs[0])["where"] == "spilled"
    assert actorflow.get(total.remote(refs[0])) == expected_sum(size, 0.0)
    for i, ref in enumerate(refs):
        value = actorflow.get(ref)
        assert value.shape == (size // 8,) and value[0] == value[-1] == float(i)
        del value
    spill_dir = os.path.join(context.session().session_dir, "spill")
    assert os.listdir(spill_dir)
    del refs, ref
    collect()
    poll_until(
        lambda: store_stats()["in_use"] == 0 and store_stats()["spilled_bytes"] == 0,
        message="spilled objects not freed",
    )
    poll_until(lambda: not os.listdir(spill_dir), message="spill files not deleted")


def test_task_results_spill_too(make_cluster):
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    size = 8 * MiB
    refs = [make_array.remote(size, float(i)) for i in range(12)]
    actorflow.wait(refs, num_returns=len(refs), timeout=30)
    assert store_stats()["spill_count"] > 0
    assert [float(actorflow.get(r)[-1]) for r in refs] == [float(i) for i in range(12)]


def test_freed_segments_make_room_before_anything_spills(make_cluster, poll_until):
    """Objects of changing sizes come and go next to live ones: pooled segments are given
    back to make room, and no live object is spilled while the live ones fit."""
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    live = [actorflow.put(big_array(8 * MiB, float(i))) for i in range(4)]  # 32 MiB
    for i, size in enumerate([4, 12, 20, 6, 24, 2, 16, 28] * 2):
        baseline = in_use()
        ref = actorflow.put(big_array(size * MiB, float(i)))
        assert float(actorflow.get(ref)[-1]) == float(i)
        del ref
        collect()
        poll_until(lambda: in_use() < baseline + MiB, message="object not freed")  # noqa: B023
        stats = store_stats()
        assert stats["used"] <= stats["capacity"]
    assert store_stats()["spill_count"] == 0
    assert [float(actorflow.get(r)[0]) for r in live] == [0.0, 1.0, 2.0, 3.0]


def test_objects_read_and_let_go_can_still_be_spilled(make_cluster):
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    size = 8 * MiB
    refs = []
    for i in range(14):  # 112 MiB; each value is read and dropped at once
        refs.append(actorflow.put(big_array(size, float(i))))
        assert float(actorflow.get(refs[-1])[0]) == float(i)
    assert [float(actorflow.get(r)[-1]) for r in refs] == [float(i) for i in range(14)]


def test_object_larger_than_the_store(make_cluster):
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    arr = big_array(80 * MiB)
    with pytest.raises(exceptions.ObjectStoreFullError) as info:
        actorflow.put(arr)
    message = str(info.value)
    asked = re.search(r"asked for (\d+) bytes", message)
    pinned = re.search(r"(\d+) bytes are pinned", message)
    assert asked and pinned, message
    assert int(asked.group(1)) >= arr.nbytes
    # A task result or a by-value argument that big fails the same way.
    with pytest.raises(exceptions.ObjectStoreFullError):
        actorflow.get(make_array.remote(80 * MiB), timeout=30)
    with pytest.raises(exceptions.ObjectStoreFullError):
        actorflow.get(total.remote(arr), timeout=30)
    # The store still works afterwards.
    assert actorflow.get(total.remote(big_array())) == expected_sum()


def test_store_full_of_pinned_objects(make_cluster):
    """Objects mapped by a reader cannot be spilled: once they fill the store, a put fails
    and says how much is pinned, instead of overwriting them."""
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    size = 8 * MiB
    refs, values = [], []
    with pytest.raises(exceptions.ObjectStoreFullError) as info:
        for i in range(10):
            refs.append(actorflow.put(big_array(size, float(i))))
            values.append(actorflow.get(refs[-1]))  # mapped: pinned
    pinned = re.search(r"(\d+) bytes are pinned", str(info.value))
    assert pinned and int(pinned.group(1)) >= 6 * size, str(info.value)
    assert [float(v[0]) for v in values] == [float(i) for i in range(len(values))]


def test_store_size_and_inline_limit_from_the_environment(make_cluster, monkeypatch):
    monkeypatch.setenv("ACTORFLOW_OBJECT_STORE_MEMORY", str(96 * MiB))
    monkeypatch.setenv("ACTORFLOW_INLINE_OBJECT_MAX_BYTES", str(2 * MiB))
    info = make_cluster(num_cpus=1)
    assert info["object_store_memory"] == store_stats()["capacity"] == 96 * MiB
    assert stored(actorflow.put(big_array(MiB))) is None  # inline now
    assert stored(actorflow.put(big_array(3 * MiB))) is not None
    assert actorflow.get(total.remote(big_array(MiB))) == expected_sum(MiB)


def test_pool_idle_time_from_the_environment(make_cluster, monkeypatch, poll_until):
    """Config.store_pool_idle_seconds (default 10 s) decides when pooled segments go."""
    monkeypatch.setenv("ACTORFLOW_STORE_POOL_IDLE_SECONDS", "1")
    make_cluster(num_cpus=1)  # a store of its own: its pool holds only this test's segment
    ref = actorflow.put(big_array())
    del ref
    poll_until(lambda: store_stats()["pooled"] > 0, message="the freed segment was not pooled")
    # Well before the default's 10 s: the pool is emptied after the 1 s configured.
    poll_until(lambda: store_stats()["pooled"] == 0, timeout=5, message="pool kept its segment")


# -- 4. refs inside objects ---------------------------------------------------------------------


def test_ref_inside_a_put_object_keeps_its_target(cluster, poll_until):
    baseline = in_use()
    inner = actorflow.put(big_array())
    outer = actorflow.put([inner])
    del inner
    collect()
    assert in_use() >= baseline + BIG
    assert float(actorflow.get(actorflow.get(outer)[0]).sum()) == expected_sum()
    assert actorflow.get(total_of_nested.remote(actorflow.get(outer))) == [expected_sum()]
    del outer
    collect()
    poll_until(lambda: in_use() <= baseline, message="inner object not freed with the outer")


def test_ref_inside_a_large_object_in_the_store(cluster, poll_until):
    baseline = in_use()
    inner = actorflow.put(big_array(fill=1.0))
    outer = actorflow.put([inner, big_array(fill=2.0)])
    del inner
    collect()
    assert stored(outer) is not None
    # The task gets the outer value (a list holding the inner ref and an array).
    assert actorflow.get(where_is_nested.remote(outer))[1] == expected_sum(fill=1.0)
    got = actorflow.get(outer)
    assert float(got[1].sum()) == expected_sum(fill=2.0)
    assert actorflow.get(total_of_nested.remote(got[:1])) == [expected_sum(fill=1.0)]
    del outer, got
    collect()
    poll_until(lambda: in_use() <= baseline, message="not freed")


def test_refs_returned_by_a_task_outlive_the_task(cluster, poll_until):
    """Refs a task put and returned in a list live on with their owner (the task's worker)
    while it runs other tasks; the driver holds them as a registered borrower, not just by
    the owner's grace period for refs in flight."""
    baseline = in_use()
    refs = actorflow.get(put_arrays.remote(3))
    driver = context.core_or_none().address
    assert all(driver in borrowers_at_owner(r.hex(), r.owner) for r in refs)
    assert actorflow.get([small.remote(i) for i in range(200)]) == list(range(1, 201))
    assert (
        actorflow.get([total.remote(big_array(fill=9.0)) for _ in range(4)])
        == [expected_sum(fill=9.0)] * 4
    )
    assert [float(actorflow.get(r)[0]) for r in refs] == [0.0, 1.0, 2.0]
    assert actorflow.get(total_of_nested.remote(refs)) == [
        expected_sum(fill=float(i)) for i in range(3)
    ]
    del refs
    collect()
    poll_until(lambda: in_use() <= baseline, message="worker-owned objects not freed")


def test_worker_owned_ref_passed_to_an_actor(cluster, poll_until):
    baseline = in_use()
    holder = Holder.remote()
    refs = actorflow.get(put_arrays.remote(1))
    obj_hex, owner = refs[0].hex(), refs[0].owner
    driver = context.core_or_none().address
    assert actorflow.get(holder.hold.remote(refs)) == 1
    del refs
    collect()
    # Only the actor holds it now, as a borrower registered with the worker that owns it.
    poll_until(lambda: driver not in borrowers_at_owner(obj_hex, owner))
    assert borrowers_at_owner(obj_hex, owner)
    actorflow.get([small.remote(i) for i in range(100)])
    assert actorflow.get(holder.totals.remote()) == [expected_sum(fill=0.0)]
    assert in_use() >= baseline + BIG
    actorflow.get(holder.drop.remote())
    poll_until(lambda: in_use() <= baseline, message="object not freed after the actor let go")
    actorflow.kill(holder)


def test_borrowed_value_outlives_its_ref(cluster, poll_until):
    """A value read from a worker-owned object stays valid after the driver's ref goes and
    the owner frees the object, while its segment's size is being reused."""
    baseline = in_use()
    [ref] = actorflow.get(put_arrays.remote(1))
    arr = actorflow.get(ref)
    del ref
    collect()
    for i in range(6):
        actorflow.get(actorflow.put(big_array(fill=100.0 + i)))
        assert actorflow.get(make_array.remote(BIG, 200.0 + i))[0] == 200.0 + i
    assert float(arr[0]) == float(arr[-1]) == 0.0 and float(arr.sum()) == 0.0
    del arr
    collect()
    poll_until(lambda: in_use() <= baseline, message="borrowed object not freed")


def test_put_from_an_async_actor(cluster, poll_until):
    """A put on the actor's event loop (the writer makes its segment itself)."""
    baseline = in_use()
    actor = AsyncActor.remote()
    [ref] = actorflow.get(actor.put.remote(BIG))
    assert float(actorflow.get(ref).sum()) == expected_sum(fill=6.0)
    del ref
    collect()
    poll_until(lambda: in_use() <= baseline, message="not freed")
    actorflow.kill(actor)


# -- 5. objects that cannot be had --------------------------------------------------------------


def test_get_after_the_owner_actor_died(cluster, poll_until, process_gone):
    owner = Owner.remote()
    pid = actorflow.get(owner.pid.remote())
    [ref] = actorflow.get(owner.make.remote(BIG))
    actorflow.kill(owner)
    poll_until(lambda: process_gone(pid), message="owner actor still running")
    with pytest.raises((exceptions.OwnerDiedError, exceptions.ObjectLostError)):
        actorflow.get(ref, timeout=20)
    with pytest.raises((exceptions.OwnerDiedError, exceptions.ObjectLostError)):
        actorflow.get(total.remote(ref), timeout=20)


def test_get_waiting_on_an_owner_that_dies(cluster, tmp_path, poll_until, process_gone):
    """A get already waiting for an object whose owner dies fails instead of hanging."""
    owner = Owner.remote()
    pid = actorflow.get(owner.pid.remote())
    [ref] = actorflow.get(owner.make_pending.remote(str(tmp_path / "never")))
    future = ref.future()
    actorflow.kill(owner)
    poll_until(lambda: process_gone(pid), message="owner actor still running")
    with pytest.raises((exceptions.OwnerDiedError, exceptions.ObjectLostError)):
        future.result(timeout=20)


def test_value_read_after_its_owner_died_is_never_overwritten(
    make_cluster, poll_until, process_gone
):
    make_cluster(num_cpus=1)  # a store of its own: its pool holds only this test's segment
    owner = Owner.remote()
    pid = actorflow.get(owner.pid.remote())
    [ref] = actorflow.get(owner.make.remote(BIG))
    assert actorflow.wait([ref], timeout=20)[0]  # the driver learns where the object is
    actorflow.kill(owner)
    poll_until(lambda: process_gone(pid), message="owner actor still running")
    poll_until(lambda: store_stats()["objects"] == 0, message="dead owner's object not freed")
    try:
        value = actorflow.get(ref, timeout=20)
    except (exceptions.OwnerDiedError, exceptions.ObjectLostError):
        return  # as in Ray: the owner is gone, so is the object
    others = [actorflow.put(big_array(fill=100.0 + i)) for i in range(3)]
    assert float(value[0]) == float(value[-1]) == 7.0, "overwritten by a later object"
    del others


def test_objects_of_a_dead_owner_are_freed(cluster, poll_until, process_gone):
    """A value read before its owner died stays valid; the object goes once that value does."""
    baseline = in_use()
    owner = Owner.remote()
    pid = actorflow.get(owner.pid.remote())
    [ref] = actorflow.get(owner.make.remote(BIG))
    value = actorflow.get(ref)
    actorflow.kill(owner)
    poll_until(lambda: process_gone(pid), message="owner actor still running")
    assert float(value.sum()) == expected_sum(fill=7.0)
    del value, ref
    collect()
    poll_until(lambda: in_use() <= baseline, message="dead owner's object not freed")


# -- 6. no leaks under load ---------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_many_large_results_do_not_leak(cluster, poll_until):
    """20,000 tasks returning 1 MB each, in batches of 500: half the batches are dropped at
    once, half after waiting for them. The store and the driver's memory stay bounded."""
    size, batches, batch = 1_000_000, 40, 500
    baseline, rss_before = in_use(), rss_bytes()
    peak_in_use = peak_rss = 0

    def sample() -> None:
        nonlocal peak_in_use, peak_rss
        peak_in_use = max(peak_in_use, in_use())
        peak_rss = max(peak_rss, rss_bytes())
        assert peak_in_use < 1 << 30, f"store in_use {peak_in_use} after batch {i}"

    for i in range(batches):
        refs = [ones.remote(size) for _ in range(batch)]
        if i % 2:
            ready, _ = actorflow.wait(refs, num_returns=batch, timeout=60)
            assert len(ready) == batch
            value = actorflow.get(refs[i])
            assert value.nbytes == size and int(value[-1]) == 1
            sample()
            del value, ready
        del refs
        sample()
    collect()
    poll_until(lambda: in_use() <= baseline, timeout=30, message="results not freed")
    assert peak_rss - rss_before < 300 * MiB, (rss_before, peak_rss)
    stats = store_stats()
    assert store_files() <= stats["used"] <= stats["capacity"]


# -- 7. async -----------------------------------------------------------------------------------


def test_await_a_large_object_inside_an_async_actor(cluster):
    actor = AsyncActor.remote()
    ref = actorflow.put(big_array())
    got, where = actorflow.get(actor.total_of.remote([ref]))
    assert got == expected_sum()
    assert where.startswith(SHM_PREFIX)
    assert actorflow.get(actor.total_of_task_result.remote(BIG)) == expected_sum(fill=2.0)
    actorflow.kill(actor)


async def test_await_large_objects_from_an_async_driver(cluster):
    arr = await make_array.remote(BIG, 5.0)
    assert float(arr.sum()) == expected_sum(fill=5.0)
    assert not arr.flags.writeable
    ref = actorflow.put(big_array())
    np.testing.assert_array_equal(await ref, big_array())
    summed, again = await asyncio.gather(total.remote(ref), make_array.remote(BIG))
    assert summed == expected_sum()
    np.testing.assert_array_equal(again, big_array())
