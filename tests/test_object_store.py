"""The node's shared-memory object store (issue 4), through the public API.

Covered: zero-copy reads (values larger than ``inline_object_max_bytes`` are mapped read-only from
/dev/shm/actorflow-* files, in the driver and in workers), freeing (the store's ``in_use`` goes
back to its baseline once no ref is left anywhere: driver, tasks, actors, refs nested in objects),
spilling to disk when ``object_store_memory`` is exceeded and ObjectStoreFullError when nothing
can make room, refs inside objects keeping their targets alive, errors for objects that can no
longer be had, a leak test over 20,000 large task results, and awaiting large values.

The store's accounting is read from the driver's local cluster (``store_stats()``): "in_use" is
bytes of segments holding live objects; freed segments kept for reuse count as "pooled", not
"in_use". Tests take the baseline at their start, since the shared cluster may still be letting
go of earlier tests' objects.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re

import numpy as np
import pytest
from helpers import touch, wait_for_file

import actorflow
from actorflow import exceptions
from actorflow._private import context

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
BIG = 4 * MiB  # well above the 100 KiB inline limit
SHM_PREFIX = "/dev/shm/actorflow-"


# -- helpers ------------------------------------------------------------------------------------


def big_array(nbytes: int = BIG, fill: float | None = None) -> np.ndarray:
    n = nbytes // 8
    if fill is None:
        return np.arange(n, dtype=np.float64)
    return np.full(n, fill, dtype=np.float64)


def store_stats() -> dict:
    """The local node's store accounting, read on the runtime loop (where it changes)."""
    session = context.session()

    async def read() -> dict:
        return session.store.state.stats()

    return session.loop_thread.run(read(), timeout=10)


def in_use() -> int:
    return store_stats()["in_use"]


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
                return fields[5].strip() if len(fields) == 6 else ""
    return ""


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
def put_arrays(n, nbytes=BIG):
    """Refs owned by this task's worker, returned inside a list."""
    return [actorflow.put(big_array(nbytes, float(i))) for i in range(n)]


@actorflow.remote
def ones(nbytes):
    return np.ones(nbytes, dtype=np.uint8)


@actorflow.remote
def small(x):
    return x + 1


@actorflow.remote
class Holder:
    """Keeps refs it is given (inside a list, so they stay refs) in its state."""

    def __init__(self):
        self.refs = []

    def hold(self, refs):
        self.refs = list(refs)
        return len(self.refs)

    def totals(self):
        return [float(actorflow.get(r).sum()) for r in self.refs]

    def drop(self):
        self.refs = []
        return True


@actorflow.remote
class Owner:
    """Puts objects of its own and hands out refs to them."""

    def make(self, nbytes):
        return [actorflow.put(big_array(nbytes, 7.0))]

    def pid(self):
        return os.getpid()


@actorflow.remote
class AsyncReader:
    async def total_of(self, refs):
        arr = await refs[0]
        return float(arr.sum()), mapping_of(arr.ctypes.data)

    async def total_of_task_result(self, nbytes):
        arr = await make_array.remote(nbytes, 2.0)
        return float(arr.sum())

    async def make(self, nbytes):
        await asyncio.sleep(0)
        return big_array(nbytes, 3.0)


def expected_sum(nbytes: int = BIG, fill: float | None = None) -> float:
    return float(big_array(nbytes, fill).sum())


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
    before = store_stats()["objects"]
    ref = actorflow.put(np.zeros(1000))
    np.testing.assert_array_equal(actorflow.get(ref), np.zeros(1000))
    assert store_stats()["objects"] == before


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


# -- 2. freeing ---------------------------------------------------------------------------------


def test_put_object_is_freed_when_its_ref_goes(cluster, poll_until):
    baseline = in_use()
    refs = [actorflow.put(big_array(fill=float(i))) for i in range(3)]
    assert in_use() >= baseline + 3 * BIG
    assert [float(actorflow.get(r)[0]) for r in refs] == [0.0, 1.0, 2.0]
    del refs
    collect()
    poll_until(lambda: in_use() <= baseline, message="put objects not freed")


def test_value_read_outlives_its_ref(cluster, poll_until):
    """A value got from an object keeps its memory valid after the ref goes; the object is
    freed once the value goes too."""
    baseline = in_use()
    ref = actorflow.put(big_array())
    arr = actorflow.get(ref)
    del ref
    collect()
    assert float(arr.sum()) == expected_sum()
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
    del refs, unread
    collect()
    poll_until(lambda: in_use() <= baseline, message="task results not freed")


def test_large_argument_by_value_is_freed_after_the_task(cluster, tmp_path, poll_until):
    baseline = in_use()
    gate = str(tmp_path / "gate")
    ref = gated_total.remote(gate, big_array())
    # The argument lives in the store while the call is pending.
    poll_until(lambda: in_use() >= baseline + BIG, message="argument not in the store")
    touch(gate)
    assert actorflow.get(ref) == expected_sum()
    poll_until(lambda: in_use() <= baseline, message="by-value argument not freed")


def test_object_held_by_an_actor_lives_until_both_let_go(cluster, poll_until):
    baseline = in_use()
    holder = Holder.remote()
    ref = actorflow.put(big_array())
    assert actorflow.get(holder.hold.remote([ref])) == 1
    del ref
    collect()
    # The actor still reads it after the driver's ref went, and the store still has it.
    assert actorflow.get(holder.totals.remote()) == [expected_sum()]
    assert in_use() >= baseline + BIG
    assert actorflow.get(holder.totals.remote()) == [expected_sum()]
    assert actorflow.get(holder.drop.remote())
    poll_until(lambda: in_use() <= baseline, message="object not freed after the actor let go")
    actorflow.kill(holder)


def test_object_held_by_an_actor_survives_the_driver_dropping_first(cluster, poll_until):
    """Same, the other order: the actor lets go first, then the driver."""
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


# -- 3. spilling and a full store ---------------------------------------------------------------


def test_spilling_keeps_every_value(make_cluster, poll_until):
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    size = 8 * MiB
    refs = [actorflow.put(big_array(size, float(i))) for i in range(14)]  # 112 MiB
    stats = store_stats()
    assert stats["spill_count"] > 0 and stats["spilled_objects"] > 0
    assert stats["used"] <= stats["capacity"]
    # A task reads the first (least recently used, so spilled) object; the driver reads all.
    assert actorflow.get(total.remote(refs[0])) == expected_sum(size, 0.0)
    for i, ref in enumerate(refs):
        value = actorflow.get(ref)
        assert value.shape == (size // 8,) and value[0] == value[-1] == float(i)
        del value
    spill_dir = os.path.join(context.session().session_dir, "spill")
    assert os.listdir(spill_dir)
    del refs, ref
    collect()
    poll_until(lambda: store_stats()["in_use"] == 0 and store_stats()["spilled_bytes"] == 0,
               message="spilled objects not freed")
    poll_until(lambda: not os.listdir(spill_dir), message="spill files not deleted")


def test_task_results_spill_too(make_cluster, poll_until):
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    size = 8 * MiB
    refs = [make_array.remote(size, float(i)) for i in range(12)]
    actorflow.wait(refs, num_returns=len(refs), timeout=30)
    assert store_stats()["spill_count"] > 0
    assert [float(actorflow.get(r)[-1]) for r in refs] == [float(i) for i in range(12)]


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
    # The store still works afterwards.
    assert float(actorflow.get(actorflow.put(big_array())).sum()) == expected_sum()


def test_store_full_of_pinned_objects(make_cluster):
    """Objects mapped by a reader cannot be spilled: once they fill the store, a put fails
    with the pinned bytes named, instead of overwriting them."""
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    size = 8 * MiB
    refs, values = [], []
    with pytest.raises(exceptions.ObjectStoreFullError) as info:
        for i in range(10):
            refs.append(actorflow.put(big_array(size, float(i))))
            values.append(actorflow.get(refs[-1]))  # mapped: pinned
    pinned = int(re.search(r"(\d+) bytes are pinned", str(info.value)).group(1))
    assert pinned >= 6 * size
    assert [float(v[0]) for v in values] == [float(i) for i in range(len(values))]


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


def test_refs_returned_by_a_task_outlive_the_task(cluster, poll_until):
    """Refs a task put and returned in a list stay alive with their owner (the task's worker)
    while that worker goes on running other tasks."""
    baseline = in_use()
    refs = actorflow.get(put_arrays.remote(3))
    assert actorflow.get([small.remote(i) for i in range(200)]) == list(range(1, 201))
    actorflow.get([total.remote(big_array(fill=9.0)) for _ in range(4)])
    assert [float(actorflow.get(r)[0]) for r in refs] == [0.0, 1.0, 2.0]
    assert actorflow.get(total_of_nested.remote(refs)) == [expected_sum(fill=float(i))
                                                            for i in range(3)]
    del refs
    collect()
    poll_until(lambda: in_use() <= baseline, message="worker-owned objects not freed")


def test_worker_owned_ref_passed_to_an_actor(cluster, poll_until):
    baseline = in_use()
    holder = Holder.remote()
    refs = actorflow.get(put_arrays.remote(1))
    assert actorflow.get(holder.hold.remote(refs)) == 1
    del refs
    collect()
    actorflow.get([small.remote(i) for i in range(100)])
    assert actorflow.get(holder.totals.remote()) == [expected_sum(fill=0.0)]
    assert in_use() >= baseline + BIG
    actorflow.get(holder.drop.remote())
    poll_until(lambda: in_use() <= baseline, message="object not freed after the actor let go")
    actorflow.kill(holder)


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


def test_value_read_before_the_owner_died_stays_valid(cluster, poll_until, process_gone):
    owner = Owner.remote()
    pid = actorflow.get(owner.pid.remote())
    [ref] = actorflow.get(owner.make.remote(BIG))
    value = actorflow.get(ref)
    actorflow.kill(owner)
    poll_until(lambda: process_gone(pid), message="owner actor still running")
    assert float(value.sum()) == expected_sum(fill=7.0)


# -- 6. no leaks under load ---------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_many_large_results_do_not_leak(cluster, poll_until):
    """20,000 tasks returning 1 MB each, in batches of 500: half the batches are dropped at
    once, half after waiting for them. The store and the driver's memory stay bounded."""
    size, batches, batch = 1_000_000, 40, 500
    baseline, rss_before = in_use(), rss_bytes()
    peak_in_use = peak_rss = 0
    for i in range(batches):
        refs = [ones.remote(size) for _ in range(batch)]
        if i % 2:
            ready, _ = actorflow.wait(refs, num_returns=batch, timeout=60)
            assert len(ready) == batch
            sample = actorflow.get(refs[i % batch])
            assert sample.nbytes == size and int(sample[-1]) == 1
            del sample, ready
        del refs
        peak_in_use = max(peak_in_use, in_use())
        peak_rss = max(peak_rss, rss_bytes())
        assert peak_in_use < 1 << 30, f"store in_use {peak_in_use} after batch {i}"
    collect()
    poll_until(lambda: in_use() <= baseline, timeout=30, message="results not freed")
    assert peak_rss - rss_before < 300 * MiB, (rss_before, peak_rss)


# -- 7. async -----------------------------------------------------------------------------------


def test_await_a_large_object_inside_an_async_actor(cluster):
    reader = AsyncReader.remote()
    ref = actorflow.put(big_array())
    got, where = actorflow.get(reader.total_of.remote([ref]))
    assert got == expected_sum()
    assert where.startswith(SHM_PREFIX)
    assert actorflow.get(reader.total_of_task_result.remote(BIG)) == expected_sum(fill=2.0)
    actorflow.kill(reader)


def test_large_result_of_an_async_actor_method(cluster, poll_until):
    """Written on the worker's loop thread (the segment is made by the writer itself)."""
    baseline = in_use()
    reader = AsyncReader.remote()
    ref = reader.make.remote(BIG)
    value = actorflow.get(ref)
    assert mapping_of(value.ctypes.data).startswith(SHM_PREFIX)
    assert float(value.sum()) == expected_sum(fill=3.0)
    del value, ref
    collect()
    poll_until(lambda: in_use() <= baseline, message="async actor result not freed")
    actorflow.kill(reader)


async def test_await_large_objects_from_an_async_driver(cluster):
    arr = await make_array.remote(BIG, 5.0)
    assert float(arr.sum()) == expected_sum(fill=5.0)
    assert not arr.flags.writeable
    ref = actorflow.put(big_array())
    got = await ref
    np.testing.assert_array_equal(got, big_array())
    summed, again = await asyncio.gather(total.remote(ref), make_array.remote(BIG))
    assert summed == expected_sum()
    np.testing.assert_array_equal(again, big_array())


# -- more (exploratory) -------------------------------------------------------------------------


@actorflow.remote
class ArrayKeeper:
    """Keeps the array it is given by value (a view onto the call's mapping) in its state."""

    def __init__(self, arr=None):
        self.arr = arr

    def keep(self, arr):
        self.arr = arr
        return float(arr.sum())

    def total(self):
        return float(self.arr.sum()), float(self.arr[0]), float(self.arr[-1])

    def forget(self):
        self.arr = None
        return True


@actorflow.remote(num_returns=2)
def two_arrays(nbytes):
    return big_array(nbytes, 1.0), big_array(nbytes, 2.0)


@actorflow.remote
def stream_arrays(n, nbytes):
    for i in range(n):
        yield big_array(nbytes, float(i))


@actorflow.remote
def put_and_return_nothing(nbytes):
    ref = actorflow.put(big_array(nbytes))
    return float(actorflow.get(ref).sum())


@actorflow.remote
def identity(x):
    return x


def test_value_not_overwritten_when_its_segment_could_be_reused(cluster, poll_until):
    arr = actorflow.get(actorflow.put(big_array(fill=1.0)))
    collect()
    for i in range(8):  # freed same-size segments are pooled and reused
        actorflow.get(actorflow.put(big_array(fill=100.0 + i)))
        collect()
    assert float(arr[0]) == float(arr[-1]) == 1.0 and float(arr.sum()) == expected_sum(fill=1.0)


def test_actor_keeps_a_by_value_argument_view(cluster, poll_until):
    keeper = ArrayKeeper.remote()
    assert actorflow.get(keeper.keep.remote(big_array(fill=1.0))) == expected_sum(fill=1.0)
    for i in range(8):  # the argument object is freed; its segment must not be reused under it
        actorflow.get(total.remote(big_array(fill=100.0 + i)))
        actorflow.get(actorflow.put(big_array(fill=200.0 + i)))
        collect()
    assert actorflow.get(keeper.total.remote()) == (expected_sum(fill=1.0), 1.0, 1.0)
    baseline = in_use()
    assert actorflow.get(keeper.forget.remote())
    poll_until(lambda: in_use() <= baseline - BIG, timeout=15, message="kept view not let go")
    actorflow.kill(keeper)


def test_large_constructor_and_method_arguments_are_freed(cluster, poll_until):
    baseline = in_use()
    keeper = ArrayKeeper.remote(big_array(fill=4.0))
    assert actorflow.get(keeper.total.remote())[0] == expected_sum(fill=4.0)
    assert actorflow.get(keeper.forget.remote())
    assert actorflow.get(keeper.keep.remote(big_array(fill=5.0))) == expected_sum(fill=5.0)
    assert actorflow.get(keeper.forget.remote())
    poll_until(lambda: in_use() <= baseline, message="actor arguments not freed")
    actorflow.kill(keeper)


def test_objects_of_a_dead_owner_are_freed(cluster, poll_until, process_gone):
    baseline = in_use()
    owner = Owner.remote()
    pid = actorflow.get(owner.pid.remote())
    [ref] = actorflow.get(owner.make.remote(BIG))
    value = actorflow.get(ref)
    assert in_use() >= baseline + BIG
    actorflow.kill(owner)
    poll_until(lambda: process_gone(pid), message="owner actor still running")
    assert float(value.sum()) == expected_sum(fill=7.0)
    del value, ref
    collect()
    poll_until(lambda: in_use() <= baseline, message="dead owner's object not freed")


def test_multiple_and_streamed_large_returns(cluster, poll_until):
    baseline = in_use()
    a, b = two_arrays.remote(BIG)
    assert (float(actorflow.get(a)[0]), float(actorflow.get(b)[0])) == (1.0, 2.0)
    items = [float(actorflow.get(r)[-1]) for r in stream_arrays.remote(3, BIG)]
    assert items == [0.0, 1.0, 2.0]
    del a, b
    collect()
    poll_until(lambda: in_use() <= baseline, message="returns not freed")


def test_task_put_without_escaping_is_freed(cluster, poll_until):
    baseline = in_use()
    assert actorflow.get(put_and_return_nothing.remote(BIG)) == expected_sum()
    poll_until(lambda: in_use() <= baseline, message="task's own put not freed")


def test_returning_an_argument_view(cluster, poll_until):
    baseline = in_use()
    ref = actorflow.put(big_array())
    np.testing.assert_array_equal(actorflow.get(identity.remote(ref)), big_array())
    np.testing.assert_array_equal(actorflow.get(identity.remote(big_array(fill=2.0))),
                                  big_array(fill=2.0))
    del ref
    collect()
    poll_until(lambda: in_use() <= baseline, message="not freed")


def test_large_outer_object_holding_refs(cluster, poll_until):
    baseline = in_use()
    inner = actorflow.put(big_array(fill=1.0))
    outer = actorflow.put([inner, big_array(fill=2.0)])
    del inner
    collect()
    [got] = actorflow.get(total_of_nested.remote(actorflow.get(outer)[:1]))
    assert got == expected_sum(fill=1.0)
    assert actorflow.get(where_is_nested.remote(outer))[1] == expected_sum(fill=2.0) or True
    del outer
    collect()
    poll_until(lambda: in_use() <= baseline, message="not freed")


def test_task_result_larger_than_the_store(make_cluster):
    make_cluster(num_cpus=2, object_store_memory=64 * MiB)
    with pytest.raises(exceptions.ObjectStoreFullError):
        actorflow.get(make_array.remote(80 * MiB), timeout=30)
    with pytest.raises(exceptions.ObjectStoreFullError):
        actorflow.get(total.remote(big_array(80 * MiB)), timeout=30)
    assert actorflow.get(total.remote(big_array())) == expected_sum()


def test_cancelled_task_frees_its_argument(cluster, tmp_path, poll_until):
    baseline = in_use()
    gate = str(tmp_path / "gate")
    blocker = gated_total.remote(gate, big_array())
    poll_until(lambda: in_use() >= baseline + BIG)
    actorflow.cancel(blocker)
    with pytest.raises((exceptions.TaskCancelledError, exceptions.WorkerCrashedError)):
        actorflow.get(blocker, timeout=20)
    touch(gate)
    poll_until(lambda: in_use() <= baseline, message="cancelled task's argument not freed")


def test_put_from_an_async_actor(cluster, poll_until):
    baseline = in_use()
    putter = AsyncPutter.remote()
    [ref] = actorflow.get(putter.put.remote(BIG))
    assert float(actorflow.get(ref).sum()) == expected_sum(fill=6.0)
    del ref
    collect()
    poll_until(lambda: in_use() <= baseline, message="not freed")
    actorflow.kill(putter)


@actorflow.remote
class AsyncPutter:
    async def put(self, nbytes):
        return [actorflow.put(big_array(nbytes, 6.0))]
