"""Objects across nodes: a node pulls an object it lacks from the node that holds it, in chunks;
arguments are pulled before the task runs; the owner frees every copy; an object only a dead
node held is lost (ObjectLostError), never a hang."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import actorflow
from actorflow import exceptions
from actorflow._private.config import Config
from actorflow._private.worker import context
from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(180)

N = 50 * 1024 * 1024 // 8  # a 50 MB float64 array


@actorflow.remote
def checksum(x) -> tuple:
    """What a task on another node read: equal to np.arange(len)? and where it ran."""
    node = actorflow.get_runtime_context().get_node_id()
    return bool(np.array_equal(x, np.arange(len(x), dtype=np.float64))), len(x), node


@actorflow.remote
async def checksum_async(x) -> tuple:
    node = actorflow.get_runtime_context().get_node_id()
    return bool(np.array_equal(x, np.arange(len(x), dtype=np.float64))), len(x), node


@actorflow.remote
def make(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@actorflow.remote
def echo(value):
    return value


@actorflow.remote
class Reader:
    def read(self, x) -> int:
        return int(x[-1])


def store_call(node: dict, method: str):
    """Ask a node's store directly (stats, list_objects)."""
    core = context.core_or_none()
    assert core is not None
    return core.call_control(node["address"], "store", method, None)


def on(node: dict, fn):
    return fn.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["node_id"], soft=False)
    )


def two_nodes(local_cluster, **other) -> tuple[dict, dict]:
    head = local_cluster.add_node(num_cpus=2)
    second = local_cluster.add_node(num_cpus=2, **other)
    actorflow.init(address=local_cluster.address)
    return head, second


def test_put_here_read_there_and_result_there_read_here(local_cluster):
    head, other = two_nodes(local_cluster)
    ref = actorflow.put(np.arange(N, dtype=np.float64))
    assert actorflow.get(on(other, checksum).remote(ref), timeout=120) == (
        True,
        N,
        other["node_id"],
    )
    assert store_call(other, "stats")["pulls"] == 1

    made = on(other, make).remote(N)
    value = actorflow.get(made, timeout=120)
    assert np.array_equal(value, np.arange(N, dtype=np.float64))
    assert not value.flags.writeable  # a read-only view of the local copy, as any object
    assert store_call(head, "stats")["pulls"] == 1
    rows = {r["object_id"]: r for r in store_call(head, "list_objects")}
    assert rows[made.hex()]["pulled_from"] == other["node_id"]

    # awaited from a user's event loop: pulled before it is read, the loop never blocked
    made_too = on(other, make).remote(N // 2)

    async def read() -> np.ndarray:
        return await made_too

    assert np.array_equal(asyncio.run(read()), np.arange(N // 2, dtype=np.float64))


def test_arguments_are_pulled_once_per_node_before_tasks_run(local_cluster):
    head, other = two_nodes(local_cluster)
    ref = actorflow.put(np.arange(N, dtype=np.float64))
    # two tasks at once and an async one, all on the other node: one transfer between them
    results = actorflow.get(
        [
            on(other, checksum).remote(ref),
            on(other, checksum).remote(ref),
            on(other, checksum_async).remote(ref),
        ],
        timeout=120,
    )
    assert results == [(True, N, other["node_id"])] * 3
    stats = store_call(other, "stats")
    assert stats["pulls"] == 1 and stats["pulled_bytes"] >= N * 8
    assert store_call(head, "stats")["served_bytes"] == stats["pulled_bytes"]
    rows = [r for r in store_call(other, "list_objects") if r["object_id"] == ref.hex()]
    assert len(rows) == 1 and rows[0]["pulled_from"] == head["node_id"]
    # an actor on that node reads the copy already there
    reader = on(other, Reader).remote()
    assert actorflow.get(reader.read.remote(ref), timeout=60) == N - 1
    assert store_call(other, "stats")["pulls"] == 1


def test_every_copy_is_freed_when_the_refs_go(local_cluster, poll_until):
    head, other = two_nodes(local_cluster)
    ref = actorflow.put(np.arange(N, dtype=np.float64))
    assert actorflow.get(on(other, checksum).remote(ref), timeout=120)[0]
    made = on(other, make).remote(N)
    assert actorflow.get(made, timeout=120)[-1] == N - 1
    assert store_call(head, "stats")["objects"] == 2  # the put, and the copy of the result
    assert store_call(other, "stats")["objects"] == 2  # the result, and the copy of the put
    del ref, made

    def all_freed() -> bool:
        return all(store_call(n, "stats")["objects"] == 0 for n in (head, other))

    poll_until(all_freed, timeout=30, message="copies left in a store")
    for node in (head, other):
        assert [r for r in store_call(node, "list_objects") if not r["freed"]] == []


def test_copies_go_when_their_owner_does(local_cluster, poll_until):
    head, other = two_nodes(local_cluster)

    @actorflow.remote
    class Owner:
        def make(self):
            self.ref = actorflow.put(np.arange(N, dtype=np.float64))
            return [self.ref]

    owner = on(head, Owner).remote()
    [ref] = actorflow.get(owner.make.remote(), timeout=60)
    assert actorflow.get(on(other, checksum).remote(ref), timeout=120)[0]
    assert store_call(other, "stats")["objects"] == 1
    del ref
    actorflow.kill(owner)
    poll_until(
        lambda: store_call(other, "stats")["objects"] == 0,
        timeout=30,
        message="the copy outlived its owner",
    )


def test_object_only_a_dead_node_held_is_lost(local_cluster):
    head, other = two_nodes(local_cluster)
    # max_retries=0: not made again (test_lineage.py covers lineage reconstruction)
    made = on(other, make).options(max_retries=0).remote(N)
    ready, _ = actorflow.wait([made], timeout=120)
    assert ready
    local_cluster.kill_node(other)
    with pytest.raises(exceptions.ObjectLostError) as lost:
        actorflow.get(made, timeout=60)
    assert made.hex() in str(lost.value) and other["node_id"] in str(lost.value)
    assert store_call(head, "stats")["pulls_in_progress"] == 0


CHUNK_BYTES = Config().transfer_chunk_bytes


@pytest.mark.parametrize("size", [CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES + 12345])
def test_sizes_around_the_chunk(local_cluster, size):
    head, other = two_nodes(local_cluster)
    payload = np.random.default_rng(size).integers(0, 255, size, dtype=np.uint8)
    back = actorflow.get(on(other, echo).remote(actorflow.put(payload)), timeout=120)
    assert back.dtype == np.uint8 and np.array_equal(back, payload)
    assert store_call(other, "stats")["pulls"] == 1 and store_call(head, "stats")["pulls"] == 1


def test_zero_length_and_odd_sized_buffers(local_cluster):
    head, other = two_nodes(local_cluster)
    value = {
        "empty": np.zeros(0),
        "odd": bytes(range(7)) * 300_001,
        "array": np.arange(12_345, dtype=np.int8),
        "tail": np.ones(3, dtype=np.uint8),
    }
    back = actorflow.get(on(other, echo).remote(actorflow.put(value)), timeout=120)
    assert back["empty"].shape == (0,) and back["odd"] == value["odd"]
    assert np.array_equal(back["array"], value["array"])
    assert np.array_equal(back["tail"], value["tail"])
    assert store_call(other, "stats")["pulls"] == 1


def test_future_of_a_ref_on_another_node(local_cluster):
    """ref.future() pulls the object without blocking actorflow's loop."""
    head, other = two_nodes(local_cluster)
    made = on(other, make).remote(N)
    value = made.future().result(timeout=120)
    assert np.array_equal(value, np.arange(N, dtype=np.float64))
    assert store_call(head, "stats")["pulls"] == 1
