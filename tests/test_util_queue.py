"""actorflow.util.queue: Ray's actor-backed Queue (sync and async put/get, batches, maxsize,
timeouts, sharing one Queue between tasks and actors, shutdown).

Short timeouts (0.2 s) are only used where nothing can arrive. The cluster is the shared one of
tests/conftest.py (``cluster``).
"""

import asyncio
import pickle
import queue
import threading

import pytest

import actorflow
from actorflow.exceptions import ActorDiedError, AsyncioContextError
from actorflow.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.timeout(60)

SHORT = 0.2


@pytest.fixture
def q(cluster):
    made = Queue()
    yield made
    if made.actor is not None:
        made.shutdown(force=True)


@pytest.fixture
def small(cluster):
    made = Queue(maxsize=2)
    yield made
    if made.actor is not None:
        made.shutdown(force=True)


# -- helpers that run in the cluster -------------------------------------------------------------


@actorflow.remote
def produce(q, n):
    for i in range(n):
        q.put(i)  # blocks while the queue is full
    q.put(None)
    return n


@actorflow.remote
class Consumer:
    def consume(self, q):
        items = []
        while (item := q.get(timeout=30)) is not None:
            items.append(item)
        return items


@actorflow.remote
class AsyncConsumer:
    async def consume(self, q):
        items = []
        while (item := await q.get_async(timeout=30)) is not None:
            items.append(item)
        return items


# -- basics --------------------------------------------------------------------------------------


def test_exceptions_are_the_standard_queue_ones():
    assert issubclass(Empty, queue.Empty)
    assert issubclass(Full, queue.Full)


def test_fifo_and_sizes(q):
    assert q.empty() and q.size() == 0 and not q.full()
    for i in range(10):
        q.put(i)
    assert q.qsize() == q.size() == len(q) == 10
    assert not q.empty()
    assert [q.get() for _ in range(10)] == list(range(10))
    assert q.empty()


def test_items_keep_their_type(q):
    items = [{"a": [1, 2]}, (3, "x"), None, b"bytes"]
    for item in items:
        q.put(item)
    assert [q.get() for _ in items] == items


def test_maxsize_full_and_empty(small):
    small.put(1)
    small.put_nowait(2)
    assert small.full() and small.size() == 2
    with pytest.raises(Full):
        small.put_nowait(3)
    with pytest.raises(Full):
        small.put(3, block=False)
    assert small.size() == 2
    assert small.get_nowait() == 1
    assert small.get(block=False) == 2
    with pytest.raises(Empty):
        small.get_nowait()
    with pytest.raises(queue.Empty):  # catchable as the standard library's exception
        small.get(block=False)


def test_block_with_timeout(small):
    with pytest.raises(Empty):
        small.get(timeout=SHORT)
    small.put(1)
    small.put(2)
    with pytest.raises(Full):
        small.put(3, timeout=SHORT)
    with pytest.raises(Full):
        small.put(3, timeout=0)
    assert small.get(timeout=0) == 1  # an item that is there is returned even with timeout 0
    small.put(3, timeout=0)
    assert [small.get(), small.get()] == [2, 3]
    with pytest.raises(ValueError):
        small.get(timeout=-1)
    with pytest.raises(ValueError):
        small.put(4, timeout=-1)


def test_blocked_put_goes_in_when_room_is_made(small):
    small.put_nowait_batch([1, 2])
    done = threading.Event()
    errors = []

    def put_third():
        try:
            small.put(3, timeout=30)  # waits for room
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=put_third)
    thread.start()
    assert not done.wait(SHORT)  # no room yet: the put is still waiting
    assert small.get() == 1  # while it waits, the actor still answers other calls
    assert done.wait(30) and not errors
    thread.join()
    assert small.get_nowait_batch(2) == [2, 3]


def test_batches(cluster):
    q = Queue(maxsize=3)
    try:
        q.put_nowait_batch([1, 2])
        with pytest.raises(Full):
            q.put_nowait_batch([3, 4])  # all or nothing
        assert q.size() == 2
        q.put_nowait_batch(x for x in [3])  # any iterable
        with pytest.raises(Empty):
            q.get_nowait_batch(4)
        assert q.size() == 3
        assert q.get_nowait_batch(2) == [1, 2]
        assert q.get_nowait_batch(0) == []
        assert q.get_nowait_batch(1) == [3]
        with pytest.raises(TypeError):
            q.put_nowait_batch(5)
        with pytest.raises(TypeError):
            q.get_nowait_batch("2")
        with pytest.raises(ValueError):
            q.get_nowait_batch(-1)
    finally:
        q.shutdown(force=True)


def test_actor_options_reach_the_actor(cluster):
    q = Queue(actor_options={"name": "util-queue-test", "num_cpus": 0})
    try:
        q.put("hello")
        named = actorflow.get_actor("util-queue-test")
        assert named == q.actor
        assert actorflow.get(named.qsize.remote()) == 1
    finally:
        q.shutdown(force=True)


# -- sharing -------------------------------------------------------------------------------------


def test_a_pickled_queue_is_the_same_queue(q):
    copy = pickle.loads(pickle.dumps(q))
    assert copy.maxsize == q.maxsize and copy.actor == q.actor
    copy.put("via copy")
    assert q.get(timeout=30) == "via copy"


@pytest.mark.parametrize("consumer_class", [Consumer, AsyncConsumer])
def test_producer_task_and_consumer_actor_share_a_queue(cluster, consumer_class):
    q = Queue(maxsize=3)  # smaller than the stream: the producer must wait for the consumer
    try:
        consumer = consumer_class.remote()
        consumed = consumer.consume.remote(q)
        produced = produce.remote(q, 20)
        assert actorflow.get(consumed, timeout=30) == list(range(20))
        assert actorflow.get(produced, timeout=30) == 20
        assert q.empty()
        actorflow.kill(consumer)
    finally:
        q.shutdown(force=True)


# -- async ---------------------------------------------------------------------------------------


async def test_blocking_calls_work_inside_a_running_loop(small):
    small.put(1)  # blocks this loop with a warning, as in Ray
    assert small.size() == 1
    assert small.get() == 1


async def test_strict_setting_refuses_blocking_calls_in_a_running_loop(small, monkeypatch):
    from actorflow._private.worker import task_context

    monkeypatch.setitem(task_context._blocking_policy, "strict", True)
    with pytest.raises(AsyncioContextError, match="put_async"):
        small.put(1)
    with pytest.raises(AsyncioContextError, match="get_async"):
        small.get()
    with pytest.raises(AsyncioContextError):
        small.size()  # (actorflow.get's own check)
    await small.put_async(1)  # the refused put did not happen
    assert await small.get_async(block=False) == 1
    with pytest.raises(Empty):
        await small.get_async(block=False)


async def test_put_async_get_async(small):
    await small.put_async(1)
    await small.put_async(2, block=False)
    with pytest.raises(Full):
        await small.put_async(3, block=False)
    with pytest.raises(Full):
        await small.put_async(3, timeout=SHORT)
    assert await small.get_async() == 1
    assert await small.get_async(block=False) == 2
    with pytest.raises(Empty):
        await small.get_async(block=False)
    with pytest.raises(Empty):
        await small.get_async(timeout=SHORT)
    with pytest.raises(ValueError):
        await small.get_async(timeout=-1)


async def test_waiting_get_does_not_occupy_the_actor(q):
    getter = asyncio.ensure_future(q.get_async(timeout=30))
    done, _ = await asyncio.wait({getter}, timeout=SHORT)
    assert not done  # nothing to get yet
    # The actor still serves other calls while that get waits.
    second = asyncio.ensure_future(q.get_async(timeout=30))
    await q.put_async("first")
    await q.put_async("second")
    # Like Ray's (and asyncio's) queue, concurrent getters are not served in a set order.
    assert sorted(await asyncio.gather(getter, second)) == ["first", "second"]
    with pytest.raises(Empty):
        await q.get_async(block=False)


async def test_cancelled_get_async_loses_no_item(q):
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(q.get_async(), SHORT)
    await q.put_async("kept")
    assert await q.get_async(timeout=30) == "kept"


# -- shutdown ------------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_shutdown_ends_the_actor(cluster, force):
    q = Queue()
    q.put(1)
    handle = q.actor
    q.shutdown(force=force)
    assert q.actor is None
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(2)
    with pytest.raises(ActorDiedError):
        actorflow.get(handle.qsize.remote(), timeout=30)


async def test_shutdown_fails_a_waiting_get(cluster):
    q = Queue()
    getter = asyncio.ensure_future(q.get_async())
    done, _ = await asyncio.wait({getter}, timeout=SHORT)
    assert not done
    await asyncio.to_thread(q.shutdown)  # shutdown() blocks: not on the loop's thread
    with pytest.raises(ActorDiedError):
        await asyncio.wait_for(getter, 30)


# -- framework behaviour this module relies on ---------------------------------------------------


@actorflow.remote
class Mixed:
    def sync_thread(self):
        return threading.get_ident()

    async def async_thread(self):
        return threading.get_ident()


def test_sync_and_async_methods_of_an_async_actor_share_the_loop_thread(cluster):
    actor = Mixed.remote()
    try:
        assert actorflow.get(actor.sync_thread.remote()) == actorflow.get(
            actor.async_thread.remote()
        )
    finally:
        actorflow.kill(actor)
