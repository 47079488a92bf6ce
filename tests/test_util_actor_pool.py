"""actorflow.util.ActorPool: Ray's ActorPool API, plus its asyncio variants.

Calls that must not finish yet wait on a Signal actor, so every ordering and timeout below is
decided by the test, never by timing luck. Short timeouts (0.2 s) are only ever used on work
that cannot have finished. The cluster is the shared one of tests/conftest.py (``cluster``).
"""

import asyncio

import pytest
from helpers import Signal

import actorflow
from actorflow.exceptions import ActorDiedError, AsyncioContextError, GetTimeoutError
from actorflow.util import ActorPool

pytestmark = pytest.mark.timeout(60)

SHORT = 0.2  # a timeout for work that is blocked on a Signal and so cannot finish


@actorflow.remote
class Worker:
    async def double(self, v):
        return 2 * v

    async def gated(self, signal, v):
        """Return v once signal has been sent."""
        await signal.wait.remote()
        return v

    async def fail(self, v):
        raise ValueError(f"bad value {v}")


_workers: dict[str, list] = {}


@pytest.fixture
def workers(cluster):
    """Three Worker actors, made once per cluster (the shared cluster of tests/conftest.py)."""
    key = cluster["session_dir"]
    if key not in _workers:
        _workers.clear()
        _workers[key] = [Worker.remote() for _ in range(3)]
    return _workers[key]


@pytest.fixture
def signal(cluster):
    sig = Signal.remote()
    yield sig
    actorflow.get(sig.send.remote())  # release whatever a failed test left waiting
    actorflow.kill(sig)


def double(actor, v):
    return actor.double.remote(v)


def gate_zero(signal):
    """fn for the pool: value 0 waits for signal, the others are doubled at once."""
    return lambda a, v: a.gated.remote(signal, v) if v == 0 else a.double.remote(v)


# -- map / map_unordered ---------------------------------------------------------------------------


def test_map_returns_results_in_input_order(workers):
    pool = ActorPool(workers[:2])
    values = list(range(25))  # more values than actors: most wait in the pool
    assert list(pool.map(double, values)) == [2 * v for v in values]
    assert not pool.has_next()
    assert pool.has_free()


def test_map_is_ordered_even_when_a_later_value_finishes_first(workers, signal):
    pool = ActorPool(workers[:2])
    results = pool.map(gate_zero(signal), [0, 1])
    # 0 is held back, so the ordered results have nothing to give yet.
    with pytest.raises(GetTimeoutError):
        pool.get_next(timeout=SHORT)
    actorflow.get(signal.send.remote())
    assert list(results) == [0, 2]


def test_map_unordered_yields_results_as_they_finish(workers, signal):
    pool = ActorPool(workers[:2])
    results = pool.map_unordered(gate_zero(signal), range(10))
    # Value 0 holds one actor; 1..9 all flow through the other, in order.
    first = [next(results) for _ in range(9)]
    assert first == [2 * v for v in range(1, 10)]
    actorflow.get(signal.send.remote())
    assert list(results) == [0]


def test_map_discards_results_not_taken_before_it(workers, signal):
    pool = ActorPool(workers[:2])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "stale")
    pool.submit(double, 100)
    assert list(pool.map(double, [1, 2, 3])) == [2, 4, 6]
    assert not pool.has_next()
    assert list(pool.map_unordered(double, [])) == []


# -- submit / get_next -----------------------------------------------------------------------------


def test_submit_get_next_has_next(workers):
    pool = ActorPool(workers[:2])
    assert not pool.has_next()
    for v in (1, 2, 3):
        pool.submit(double, v)
    assert pool.has_next()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_get_next_unordered_returns_the_finished_result(workers, signal):
    pool = ActorPool(workers[:2])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "slow")
    pool.submit(double, 21)
    assert pool.get_next_unordered() == 42
    actorflow.get(signal.send.remote())
    assert pool.get_next_unordered() == "slow"
    assert not pool.has_next()


def test_get_next_after_get_next_unordered_takes_the_oldest_left(workers, signal):
    pool = ActorPool(workers[:3])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "first")
    pool.submit(double, 1)
    pool.submit(double, 2)
    got = {pool.get_next_unordered(), pool.get_next_unordered()}
    assert got == {2, 4}
    actorflow.get(signal.send.remote())
    assert pool.get_next() == "first"


def test_get_next_timeout_keeps_the_result(workers, signal):
    pool = ActorPool(workers[:2])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "late")
    with pytest.raises(GetTimeoutError) as info:
        pool.get_next(timeout=SHORT)
    assert isinstance(info.value, TimeoutError)
    assert pool.has_next()
    with pytest.raises(GetTimeoutError):
        pool.get_next(timeout=0)
    actorflow.get(signal.send.remote())
    assert pool.get_next(timeout=30) == "late"
    assert not pool.has_next()


def test_get_next_timeout_ignore_skips_the_result(workers, signal):
    pool = ActorPool(workers[:2])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "skipped")
    pool.submit(double, 5)
    assert not pool.has_free()
    with pytest.raises(GetTimeoutError, match="ignored"):
        pool.get_next(timeout=SHORT, ignore_if_timedout=True)
    assert pool.has_free()  # the skipped task's actor is usable again
    assert pool.get_next() == 10
    assert not pool.has_next()


def test_get_next_unordered_timeout_with_and_without_ignore(workers, signal):
    pool = ActorPool(workers[:1])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "x")
    with pytest.raises(GetTimeoutError):
        pool.get_next_unordered(timeout=SHORT)
    assert pool.has_next()
    with pytest.raises(GetTimeoutError, match="ignored"):
        pool.get_next_unordered(timeout=SHORT, ignore_if_timedout=True)
    assert not pool.has_next()
    assert pool.has_free()


def test_bad_timeout_is_rejected(workers):
    pool = ActorPool(workers[:1])
    pool.submit(double, 1)
    with pytest.raises(ValueError):
        pool.get_next(timeout=-1)
    assert pool.get_next() == 2


def test_task_error_propagates_and_actor_is_reused(workers):
    pool = ActorPool(workers[:1])
    pool.submit(lambda a, v: a.fail.remote(v), 7)
    pool.submit(double, 8)
    with pytest.raises(ValueError, match="bad value 7"):
        pool.get_next()
    assert pool.get_next() == 16
    assert pool.has_free()


def test_fn_must_return_an_object_ref(workers):
    pool = ActorPool(workers[:1])
    with pytest.raises(TypeError, match="ObjectRef"):
        pool.submit(lambda a, v: v, 1)
    assert pool.has_free() and not pool.has_next()


# -- membership ------------------------------------------------------------------------------------


def test_push_pop_idle_has_free(workers, signal):
    a, b = workers[0], workers[1]
    pool = ActorPool([a])
    assert pool.has_free()
    pool.submit(lambda actor, v: actor.gated.remote(signal, v), "a's")
    assert not pool.has_free()
    assert pool.pop_idle() is None
    pool.submit(double, 5)  # no idle actor: waits in the pool
    assert not pool.has_free()
    pool.push(b)  # the waiting submission starts on b at once
    assert pool.get_next_unordered(timeout=30) == 10
    with pytest.raises(ValueError):
        pool.push(a)  # busy in the pool
    with pytest.raises(ValueError):
        pool.push(b)  # idle in the pool
    assert pool.pop_idle() == b
    assert pool.pop_idle() is None
    actorflow.get(signal.send.remote())
    assert pool.get_next() == "a's"
    assert pool.pop_idle() == a
    assert not pool.has_free()


def test_dead_actor_leaves_the_pool(cluster):
    doomed, spare = Worker.remote(), Worker.remote()
    assert actorflow.get(doomed.double.remote(1)) == 2
    actorflow.kill(doomed)
    pool = ActorPool([doomed])
    pool.submit(double, 1)
    with pytest.raises(ActorDiedError):
        pool.get_next(timeout=30)
    assert not pool.has_free()
    assert pool.pop_idle() is None
    pool.push(spare)
    assert list(pool.map(double, [1, 2])) == [2, 4]
    actorflow.kill(spare)


# -- asyncio ---------------------------------------------------------------------------------------


async def test_sync_methods_in_a_running_loop_block_it_as_in_ray(workers):
    pool = ActorPool(workers[:2])
    pool.submit(double, 5)
    assert pool.get_next() == 10  # blocks the loop (with a warning), as in Ray
    assert not pool.has_next()


async def test_strict_setting_refuses_sync_methods_in_a_running_loop(workers, monkeypatch):
    from actorflow._private.worker import task_context

    monkeypatch.setitem(task_context._blocking_policy, "strict", True)
    pool = ActorPool(workers[:2])
    for v in (1, 2, 3):
        pool.submit(double, v)
    with pytest.raises(AsyncioContextError, match="get_next_async"):
        pool.get_next()
    with pytest.raises(AsyncioContextError, match="get_next_unordered_async"):
        pool.get_next_unordered()
    assert [await pool.get_next_async() for _ in range(3)] == [2, 4, 6]
    results = pool.map(double, [4])  # submitting does not block; iterating does
    with pytest.raises(AsyncioContextError):
        next(results)
    assert await pool.get_next_async() == 8
    assert not pool.has_next()
    with pytest.raises(StopAsyncIteration):
        await pool.get_next_async()
    with pytest.raises(StopAsyncIteration):
        await pool.get_next_unordered_async()


async def test_map_async_is_ordered(workers):
    pool = ActorPool(workers[:2])
    assert [r async for r in pool.map_async(double, range(25))] == [2 * v for v in range(25)]
    assert not pool.has_next()


async def test_map_unordered_async_yields_results_as_they_finish(workers, signal):
    pool = ActorPool(workers[:2])
    results = []
    async for r in pool.map_unordered_async(gate_zero(signal), range(10)):
        results.append(r)
        if len(results) == 9:
            await signal.send.remote()
    assert results == [2 * v for v in range(1, 10)] + [0]


async def test_waiting_does_not_block_the_event_loop(workers, signal):
    pool = ActorPool(workers[:2])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "released")

    async def release():
        await signal.send.remote()  # can only run if get_next_async leaves the loop free
        return "sent"

    assert await asyncio.gather(pool.get_next_async(), release()) == ["released", "sent"]


async def test_get_next_async_timeout_with_and_without_ignore(workers, signal):
    pool = ActorPool(workers[:2])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "kept")
    with pytest.raises(GetTimeoutError):
        await pool.get_next_async(timeout=SHORT)
    with pytest.raises(GetTimeoutError):
        await pool.get_next_unordered_async(timeout=0)
    assert pool.has_next()
    pool.submit(double, 3)
    with pytest.raises(GetTimeoutError, match="ignored"):
        await pool.get_next_async(timeout=SHORT, ignore_if_timedout=True)
    assert await pool.get_next_async(timeout=30) == 6
    assert not pool.has_next()


async def test_get_next_unordered_async_ignore_skips_oldest(workers, signal):
    pool = ActorPool(workers[:1])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "x")
    with pytest.raises(GetTimeoutError, match="ignored"):
        await pool.get_next_unordered_async(timeout=SHORT, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()


async def test_cancelling_a_waiter_leaves_the_task_running(workers, signal):
    pool = ActorPool(workers[:1])
    pool.submit(lambda a, v: a.gated.remote(signal, v), "survived")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(pool.get_next_async(), SHORT)
    assert pool.has_next()
    await signal.send.remote()
    assert await pool.get_next_async(timeout=30) == "survived"


async def test_concurrent_consumers_each_get_a_different_result(workers, signal):
    pool = ActorPool(workers[:2])
    pool.submit(lambda a, v: a.gated.remote(signal, v), 0)
    pool.submit(double, 1)

    async def release():
        await signal.send.remote()

    # Both consumers first wait for value 0; whichever wakes second moves on to value 1.
    got = await asyncio.gather(pool.get_next_async(), pool.get_next_async(), release())
    assert sorted(got[:2]) == [0, 2]
    assert not pool.has_next()


def test_methods_with_several_returns(cluster):
    @actorflow.remote
    class Pair:
        @actorflow.method(num_returns=2)
        def both(self, x):
            return x, -x

    pool = ActorPool([Pair.remote() for _ in range(2)])
    for v in (1, 2, 3):
        pool.submit(lambda a, v: a.both.remote(v), v)
    assert [pool.get_next(timeout=30) for _ in range(3)] == [[1, -1], [2, -2], [3, -3]]
    pool.submit(lambda a, v: a.both.remote(v), 4)
    assert pool.get_next_unordered(timeout=30) == [4, -4]
    assert list(pool.map(lambda a, v: a.both.remote(v), [5])) == [[5, -5]]
