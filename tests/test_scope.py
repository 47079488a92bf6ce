"""actorflow.scope(): remote work that ends with its block (issue 18)."""

from __future__ import annotations

import asyncio
import os

import pytest
from helpers import sleeper, wait_for_file

import actorflow
from actorflow.exceptions import TaskCancelledError

pytestmark = pytest.mark.timeout(60)


@actorflow.remote
def double(x: int) -> int:
    return 2 * x


@actorflow.remote
def fails() -> None:
    raise KeyError("missing")


@actorflow.remote
class Job:
    """An async actor whose long call records how it ended."""

    def __init__(self) -> None:
        self.state = "idle"

    async def long(self) -> str:
        self.state = "running"
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.state = "cancelled"
            raise
        self.state = "finished"
        return "finished"

    async def get_state(self) -> str:
        return self.state


async def wait_file(path: str) -> None:
    await asyncio.get_running_loop().run_in_executor(None, wait_for_file, path)


def test_a_scope_that_ends_normally_waits_for_its_work(cluster):
    async def main() -> list:
        async with actorflow.scope() as s:
            refs = [s.remote(double, i) for i in range(3)]
        assert all(ref.done() for ref in refs)  # waited for, though never awaited here
        return [await ref for ref in refs]

    assert asyncio.run(main()) == [0, 2, 4]


def test_an_error_in_the_block_cancels_the_remote_task(cluster, tmp_path):
    started = str(tmp_path / "started")

    async def main() -> actorflow.ObjectRef:
        with pytest.raises(RuntimeError, match="request failed"):
            async with actorflow.scope() as s:
                ref = s.remote(sleeper, started, 30)
                await wait_file(started)
                raise RuntimeError("request failed")
        return ref

    ref = asyncio.run(main())
    # The scope waited until the cancel landed: the task was interrupted, not left running.
    assert os.path.exists(started + ".exc")
    with pytest.raises(TaskCancelledError):
        actorflow.get(ref, timeout=30)


def test_a_cancelled_scope_cancels_its_actor_call(cluster, poll_until):
    job = Job.remote()

    async def main() -> None:
        async def handler() -> None:
            async with actorflow.scope() as s:
                await s.call(job.long)  # s.call(job.long.remote) works the same

        task = asyncio.ensure_future(handler())
        while await job.get_state.remote() != "running":
            await asyncio.sleep(0.02)
        task.cancel()  # as aiohttp does when the client goes away
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    # The remote call stopped: its coroutine was cancelled and it never finished.
    assert actorflow.get(job.get_state.remote(), timeout=30) == "cancelled"


def test_a_failing_ref_cancels_the_others_and_raises(cluster, tmp_path):
    started = str(tmp_path / "started")

    async def main() -> actorflow.ObjectRef:
        with pytest.raises(KeyError, match="missing"):
            async with actorflow.scope() as s:
                slow = s.remote(sleeper, started, 30)
                await wait_file(started)
                s.remote(fails)
        return slow

    slow = asyncio.run(main())
    assert os.path.exists(started + ".exc")
    with pytest.raises(TaskCancelledError):
        actorflow.get(slow, timeout=30)


def test_sync_scope(cluster, tmp_path):
    with actorflow.scope() as s:
        refs = s.track([double.remote(1), double.remote(2)])
    assert actorflow.get(refs, timeout=30) == [2, 4]
    started = str(tmp_path / "started")
    with pytest.raises(ValueError, match="bad input"):
        with actorflow.scope() as s:
            ref = s.remote(sleeper, started, 30)
            wait_for_file(started)
            raise ValueError("bad input")
    assert os.path.exists(started + ".exc")
    with pytest.raises(TaskCancelledError):
        actorflow.get(ref, timeout=30)


def test_an_empty_scope_is_fine(cluster):
    async def main() -> None:
        async with actorflow.scope():
            pass

    asyncio.run(main())
    with actorflow.scope():
        pass


def test_scope_misuse_is_a_clear_error(cluster):
    s = actorflow.scope()
    with pytest.raises(RuntimeError, match="use the scope in `async with"):
        s.remote(double, 1)
    with s:
        with pytest.raises(TypeError, match="takes a remote function or an actor method"):
            s.remote(print, 1)
        with pytest.raises(TypeError, match="takes ObjectRefs"):
            s.track(42)
    with pytest.raises(RuntimeError, match="this scope has ended"):
        s.remote(double, 1)
    with pytest.raises(ValueError, match="cancel_timeout"):
        actorflow.scope(cancel_timeout=-1)
