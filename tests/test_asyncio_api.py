"""asyncio: refs are awaitable from any loop, ref.future(), blocking calls refused inside a running
loop, and cancelling an awaiting asyncio task cancels the remote task."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading

import pytest
import uvloop
from helpers import gated, sleeper, touch

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)


@actorflow.remote
def square(x):
    return x * x


@actorflow.remote
def cube(x):
    return x * x * x


@actorflow.remote
def fail(message):
    raise ValueError(message)


@actorflow.remote
async def async_fan_out(n):
    return sum(await asyncio.gather(*[square.remote(i) for i in range(n)]))


@actorflow.remote
async def blocking_get_in_async_task():
    return actorflow.get(square.remote(2))


# -- awaiting -----------------------------------------------------------------------------------


async def test_await_a_ref(cluster):
    assert await square.remote(7) == 49
    assert await actorflow.put("stored") == "stored"


async def test_await_the_same_ref_twice(cluster):
    ref = square.remote(3)
    assert await ref == 9
    assert await ref == 9


async def test_gather(cluster):
    refs = [square.remote(i) for i in range(20)]
    assert await asyncio.gather(*refs) == [i * i for i in range(20)]


async def test_await_raises_the_task_error(cluster):
    with pytest.raises(ValueError, match="awaited failure") as info:
        await fail.remote("awaited failure")
    assert isinstance(info.value, exceptions.TaskError)


async def test_as_future_and_asyncio_wait(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    # cube runs nowhere else: a function known to be short may be pipelined behind the slow
    # task (see test_tasks.py::test_short_task_is_not_queued_behind_a_long_one).
    fast, slow = cube.remote(5), gated.remote(gate, "slow")
    slow_future, fast_future = slow.as_future(), fast.as_future()
    done, pending = await asyncio.wait(
        {slow_future, fast_future}, return_when=asyncio.FIRST_COMPLETED, timeout=30
    )
    assert done == {fast_future} and pending == {slow_future}
    assert fast_future.result() == 125
    touch(gate)
    assert await asyncio.wait_for(slow_future, 30) == "slow"


async def test_wait_for_timeout_cancels_the_remote_task(cluster, tmp_path, apoll_until):
    started = tmp_path / "started"
    ref = sleeper.remote(str(started))
    await apoll_until(started.exists, timeout=30)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ref, 0.2)
    await apoll_until(lambda: os.path.exists(f"{started}.exc"), timeout=20)
    with pytest.raises(exceptions.TaskCancelledError):
        await asyncio.wait_for(ref, 20)


async def test_cancelling_the_awaiting_task_cancels_the_remote_task(cluster, tmp_path, apoll_until):
    started = tmp_path / "started"
    ref = sleeper.remote(str(started))

    async def consumer():
        return await ref

    task = asyncio.create_task(consumer())
    await apoll_until(started.exists, timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The remote task is interrupted inside its time.sleep(60).
    await apoll_until(lambda: os.path.exists(f"{started}.exc"), timeout=20)
    with pytest.raises(exceptions.TaskCancelledError):
        await asyncio.wait_for(ref, 20)


async def test_blocking_get_in_a_thread_of_an_async_program(cluster):
    loop = asyncio.get_running_loop()
    value = await loop.run_in_executor(None, actorflow.get, square.remote(6))
    assert value == 36


def test_await_from_loops_on_other_threads(cluster):
    ref = square.remote(9)
    results: dict[str, object] = {}

    def in_thread(name: str, runner) -> None:
        async def main():
            return await ref, await square.remote(10)

        try:
            results[name] = runner(main())
        except BaseException as exc:  # reported below
            results[name] = exc

    threads = [
        threading.Thread(target=in_thread, args=("asyncio", asyncio.run)),
        threading.Thread(target=in_thread, args=("uvloop", uvloop.run)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"asyncio": (81, 100), "uvloop": (81, 100)}


def test_await_from_a_fresh_loop_in_sync_code(cluster):
    async def main():
        return await asyncio.gather(square.remote(2), actorflow.put(3))

    assert asyncio.run(main()) == [4, 3]


# -- ref.future() -------------------------------------------------------------------------------


def test_future(cluster):
    future = square.remote(4).future()
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=30) == 16
    failed = fail.remote("in a future").future()
    error = failed.exception(timeout=30)
    assert isinstance(error, exceptions.TaskError) and isinstance(error, ValueError)


def test_futures_compose_with_concurrent_futures(cluster):
    futures = [square.remote(i).future() for i in range(5)]
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert not not_done
    assert sorted(f.result() for f in done) == [0, 1, 4, 9, 16]


async def test_future_wrapped_for_asyncio(cluster):
    assert await asyncio.wrap_future(square.remote(8).future()) == 64


# -- blocking calls inside a running loop --------------------------------------------------------


async def test_sync_get_inside_a_running_loop_blocks_it_as_in_ray(cluster):
    # The driver's loop is not actorflow's (that runs on its own thread): the get blocks this
    # loop with a warning (test_ray_semantics.py checks the warning), and returns the value.
    assert actorflow.get(square.remote(3)) == 9


async def test_sync_wait_inside_a_running_loop_blocks_it_as_in_ray(cluster):
    ref = square.remote(4)
    assert actorflow.wait([ref], timeout=30) == ([ref], [])


async def test_sync_generator_iteration_inside_a_running_loop_blocks_it_as_in_ray(cluster):
    @actorflow.remote
    def numbers():
        yield 1
        yield 2

    gen = numbers.remote()
    assert await next(gen) == 1
    assert [await ref async for ref in gen] == [2]


def test_blocking_get_inside_an_async_task_waits_for_the_value(cluster):
    assert actorflow.get(blocking_get_in_async_task.remote(), timeout=30) == 4


# -- async remote functions awaiting other tasks -------------------------------------------------


def test_async_task_awaits_other_tasks(cluster):
    assert actorflow.get(async_fan_out.remote(5), timeout=30) == 0 + 1 + 4 + 9 + 16
