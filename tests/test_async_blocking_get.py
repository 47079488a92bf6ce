"""A blocking get or wait inside async code blocks that loop until the value arrives, as in Ray:
in an async actor's methods and async tasks (which run on a loop of their own, apart from the
loop that receives the value) and in a driver's own running loop."""

from __future__ import annotations

import asyncio

import pytest

import actorflow
from actorflow import exceptions
from tests.conftest import poll_until


@actorflow.remote
class Signal:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self) -> None:
        await self.event.wait()

    async def send(self) -> None:
        self.event.set()


@actorflow.remote
class Probe:
    """Tells the test that a call reached the point where it blocks."""

    def __init__(self) -> None:
        self.marks: list[str] = []

    def mark(self, what: str) -> None:
        self.marks.append(what)

    def seen(self) -> list[str]:
        return self.marks


@actorflow.remote
def value_after(signal, value):
    actorflow.get(signal.wait.remote())
    return value


@actorflow.remote
class Blocker:
    def __init__(self, probe) -> None:
        self.probe = probe

    async def get_slow(self, signal, value):
        ref = value_after.remote(signal, value)
        actorflow.get(self.probe.mark.remote("blocking"))
        return actorflow.get(ref)  # not ready yet: blocks this actor's loop until it is

    async def wait_slow(self, signal, value):
        ref = value_after.remote(signal, value)
        actorflow.get(self.probe.mark.remote("blocking"))
        ready, not_ready = actorflow.wait([ref], num_returns=1)
        return ready == [ref] and not not_ready and actorflow.get(ready[0])

    def plain_get_slow(self, signal, value):  # a plain method of an async actor: same loop
        return actorflow.get(value_after.remote(signal, value))

    async def stream_slow(self, signal, value):
        yield "first"
        yield actorflow.get(value_after.remote(signal, value))

    async def helpers(self, signal):
        refs = [value_after.remote(signal, i) for i in range(3)]
        done, pending = await asyncio.wait(refs, timeout=0.05)
        assert not done and len(pending) == 3
        await signal.send.remote()
        gathered = await asyncio.gather(*refs)
        first = await asyncio.wait_for(refs[0], 30)
        return gathered, first, actorflow.get(refs)

    async def ping(self) -> str:
        return "pong"


@actorflow.remote
async def async_task_get_slow(signal, value):
    ref = value_after.remote(signal, value)
    return actorflow.get(ref) + 1


def _blocked(probe) -> None:
    poll_until(lambda: "blocking" in actorflow.get(probe.seen.remote()), timeout=30)


def test_blocking_get_in_an_async_actor_waits_and_holds_its_other_calls(cluster):
    probe = Probe.remote()
    actor = Blocker.remote(probe)
    signal = Signal.remote()
    slow = actor.get_slow.remote(signal, 7)
    _blocked(probe)
    ping = actor.ping.remote()
    ready, _ = actorflow.wait([ping], timeout=1)
    assert not ready  # the actor's loop is blocked in get, as in Ray
    actorflow.get(signal.send.remote(), timeout=30)
    assert actorflow.get(slow, timeout=30) == 7
    assert actorflow.get(ping, timeout=30) == "pong"


def test_blocking_wait_in_an_async_actor_waits(cluster):
    probe = Probe.remote()
    actor = Blocker.remote(probe)
    signal = Signal.remote()
    slow = actor.wait_slow.remote(signal, 8)
    _blocked(probe)
    actorflow.get(signal.send.remote(), timeout=30)
    assert actorflow.get(slow, timeout=30) == 8


def test_blocking_get_in_a_plain_method_and_a_generator_of_an_async_actor(cluster):
    actor = Blocker.remote(Probe.remote())
    signal = Signal.remote()
    plain = actor.plain_get_slow.remote(signal, 3)
    stream = actor.stream_slow.options(num_returns="streaming").remote(signal, 4)
    actorflow.get(signal.send.remote(), timeout=30)  # the plain call holds the loop till then
    assert actorflow.get(plain, timeout=30) == 3
    assert [actorflow.get(ref, timeout=30) for ref in stream] == ["first", 4]


def test_blocking_get_in_an_async_task_waits(cluster):
    signal = Signal.remote()
    ref = async_task_get_slow.remote(signal, 41)
    ready, _ = actorflow.wait([ref], timeout=0.5)
    assert not ready
    actorflow.get(signal.send.remote(), timeout=30)
    assert actorflow.get(ref, timeout=30) == 42


def test_asyncio_helpers_on_refs_in_an_async_actor(cluster):
    actor = Blocker.remote(Probe.remote())
    gathered, first, got = actorflow.get(actor.helpers.remote(Signal.remote()), timeout=30)
    assert gathered == [0, 1, 2] and first == 0 and got == [0, 1, 2]


def test_a_call_queued_behind_a_blocked_loop_can_be_cancelled(cluster):
    probe = Probe.remote()
    actor = Blocker.remote(probe)
    signal = Signal.remote()
    slow = actor.get_slow.remote(signal, 5)
    _blocked(probe)
    queued = actor.ping.remote()
    actorflow.cancel(queued)
    actorflow.get(signal.send.remote(), timeout=30)
    assert actorflow.get(slow, timeout=30) == 5
    with pytest.raises(exceptions.TaskCancelledError):
        actorflow.get(queued, timeout=30)


def test_killing_an_actor_blocked_in_get(cluster):
    probe = Probe.remote()
    actor = Blocker.remote(probe)
    slow = actor.get_slow.remote(Signal.remote(), 6)
    _blocked(probe)
    actorflow.kill(actor)
    with pytest.raises(exceptions.ActorDiedError):
        actorflow.get(slow, timeout=30)


def test_max_concurrency_one_async_actor_blocked_in_get(cluster):
    probe = Probe.remote()
    actor = Blocker.options(max_concurrency=1).remote(probe)
    signal = Signal.remote()
    first = actor.get_slow.remote(signal, 1)
    second = actor.ping.remote()
    _blocked(probe)
    actorflow.get(signal.send.remote(), timeout=30)
    assert actorflow.get([first, second], timeout=30) == [1, "pong"]


def test_blocking_get_in_the_drivers_own_loop_of_a_slow_value(cluster):
    async def main():
        signal = Signal.remote()
        ref = value_after.remote(signal, 9)
        signal.send.remote()
        return actorflow.get(ref, timeout=30)  # blocks this loop until the value is here

    assert asyncio.run(main()) == 9
