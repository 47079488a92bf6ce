"""How many calls an actor runs at once: async actors, threaded actors, the default one-at-a-time
actor, and concurrency groups.

Overlap is proven with barriers/events that could only be passed if the calls really run at the
same time (each with a timeout, so a regression fails instead of hanging); limits are proven by
asking the actor, through a separate concurrency group, how many calls it has started.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from helpers import Signal

import actorflow

pytestmark = pytest.mark.timeout(60)


# -- async actors -----------------------------------------------------------------------------


@actorflow.remote
class AsyncRendezvous:
    """Every ``meet(n)`` call waits until n calls are inside ``meet`` at the same time."""

    def __init__(self) -> None:
        self.inside = 0
        self.all_in = asyncio.Event()

    async def meet(self, n: int) -> int:
        self.inside += 1
        if self.inside >= n:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 30)
        return self.inside

    async def ping(self) -> str:
        return "pong"


def test_async_actor_runs_calls_concurrently(cluster):
    a = AsyncRendezvous.remote()
    # With one call at a time the first meet() would wait for ever (and time out).
    assert actorflow.get([a.meet.remote(20) for _ in range(20)], timeout=40) == [20] * 20


@actorflow.remote(concurrency_groups={"ctl": 1})
class DefaultLimitAsync:
    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def work(self) -> int:
        self.started += 1
        await asyncio.wait_for(self.release.wait(), 40)
        return self.started

    @actorflow.method(concurrency_group="ctl")
    async def stats(self) -> int:
        return self.started

    @actorflow.method(concurrency_group="ctl")
    async def open(self) -> None:
        self.release.set()


def test_async_actor_default_max_concurrency_is_1000(cluster, poll_until):
    a = DefaultLimitAsync.remote()
    refs = [a.work.remote() for _ in range(1001)]
    # 1000 calls are blocked inside work() at the same time; the 1001st waits for a slot
    # (stats() is sent after it, so without a limit it would have started).
    poll_until(lambda: actorflow.get(a.stats.remote()) >= 1000, timeout=40)
    assert actorflow.get(a.stats.remote()) == 1000
    actorflow.get(a.open.remote())
    assert len(actorflow.get(refs, timeout=40)) == 1001
    assert actorflow.get(a.stats.remote()) == 1001


@actorflow.remote(max_concurrency=3, concurrency_groups={"ctl": 1})
class LimitedAsync:
    def __init__(self) -> None:
        self.started = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()

    async def work(self) -> int:
        self.started += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.wait_for(self.release.wait(), 30)
        self.in_flight -= 1
        return self.max_in_flight

    @actorflow.method(concurrency_group="ctl")
    async def stats(self) -> dict:
        return {"started": self.started, "max": self.max_in_flight}

    @actorflow.method(concurrency_group="ctl")
    async def open(self) -> None:
        self.release.set()


def test_async_actor_max_concurrency_limits_calls_in_flight(cluster, poll_until):
    a = LimitedAsync.remote()
    refs = [a.work.remote() for _ in range(7)]
    # stats() is sent after all seven work() calls, so without a limit all seven would have
    # started by the time it runs.
    stats = poll_until(
        lambda: (s := actorflow.get(a.stats.remote()))["started"] >= 3 and s, timeout=30
    )
    assert stats == {"started": 3, "max": 3}
    actorflow.get(a.open.remote())
    assert max(actorflow.get(refs, timeout=30)) == 3
    assert actorflow.get(a.stats.remote()) == {"started": 7, "max": 3}


@actorflow.remote
class AsyncWithHelpers:
    async def blocking_get(self, other):
        return actorflow.get(other.ping.remote())  # not here yet: blocks this loop, as Ray

    async def awaiting(self, other):
        return await other.ping.remote()

    async def ok(self) -> str:
        return "alive"

    def sync_method_in_async_actor(self) -> str:
        return "sync"


def test_blocking_get_inside_async_method_waits_for_the_value(cluster):
    a = AsyncWithHelpers.remote()
    assert actorflow.get(a.blocking_get.remote(AsyncRendezvous.remote()), timeout=30) == "pong"
    assert actorflow.get(a.ok.remote()) == "alive"


def test_await_ref_inside_async_method(cluster):
    a = AsyncWithHelpers.remote()
    b = AsyncRendezvous.remote()
    assert actorflow.get(a.awaiting.remote(b)) == "pong"


def test_sync_method_on_async_actor(cluster):
    a = AsyncWithHelpers.remote()
    assert actorflow.get(a.sync_method_in_async_actor.remote()) == "sync"


# -- threaded actors --------------------------------------------------------------------------


@actorflow.remote(max_concurrency=4)
class ThreadedRendezvous:
    def __init__(self) -> None:
        self.barrier = threading.Barrier(4, timeout=20)

    def meet(self) -> tuple:
        index = self.barrier.wait()
        return index, threading.get_ident()


def test_threaded_actor_runs_n_calls_at_once(cluster):
    t = ThreadedRendezvous.remote()
    # A Barrier(4) is only passed by 4 calls running at the same time on 4 threads.
    results = actorflow.get([t.meet.remote() for _ in range(4)], timeout=40)
    assert sorted(index for index, _ in results) == [0, 1, 2, 3]
    assert len({ident for _, ident in results}) == 4


@actorflow.remote(max_concurrency=2, concurrency_groups={"ctl": 1})
class LimitedThreaded:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()

    def work(self) -> int:
        with self.lock:
            self.started += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        assert self.release.wait(30)
        with self.lock:
            self.in_flight -= 1
        return self.max_in_flight

    @actorflow.method(concurrency_group="ctl")
    def stats(self) -> dict:
        with self.lock:
            return {"started": self.started, "max": self.max_in_flight}

    @actorflow.method(concurrency_group="ctl")
    def open(self) -> None:
        self.release.set()


def test_threaded_actor_runs_at_most_max_concurrency(cluster, poll_until):
    t = LimitedThreaded.remote()
    refs = [t.work.remote() for _ in range(5)]
    stats = poll_until(
        lambda: (s := actorflow.get(t.stats.remote()))["started"] >= 2 and s, timeout=30
    )
    assert stats["started"] == 2
    actorflow.get(t.open.remote())
    assert max(actorflow.get(refs, timeout=30)) == 2
    assert actorflow.get(t.stats.remote()) == {"started": 5, "max": 2}


# -- the default sync actor -------------------------------------------------------------------


@actorflow.remote
class Serial:
    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.threads: set = set()
        self.log: list = []

    def step(self, i: int) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.threads.add(threading.get_ident())
        self.log.append(i)
        # Yield the GIL so that a second thread, if there were one, would get to run here.
        for _ in range(1000):
            pass
        self.in_flight -= 1

    def report(self) -> tuple:
        return (
            self.max_in_flight,
            len(self.threads),
            threading.get_ident() in self.threads,
            list(self.log),
        )


def test_default_sync_actor_runs_one_call_at_a_time(cluster):
    s = Serial.remote()
    actorflow.get([s.step.remote(i) for i in range(100)])
    max_in_flight, n_threads, same_thread, log = actorflow.get(s.report.remote())
    assert max_in_flight == 1
    assert n_threads == 1 and same_thread
    assert log == list(range(100))


@actorflow.remote
class SerialGate:
    """A default sync actor whose first call blocks (twice) in actorflow.get()."""

    def __init__(self) -> None:
        self.log: list = []

    def blocked(self, first_signal, second_signal) -> str:
        self.log.append("blocked-start")
        actorflow.get(first_signal.wait.remote(), timeout=30)
        self.log.append("between")
        actorflow.get(second_signal.wait.remote(), timeout=30)
        self.log.append("blocked-end")
        return "done"

    def quick(self) -> list:
        self.log.append("quick")
        return list(self.log)


def test_calls_queued_behind_a_blocking_get_in_a_sync_actor_still_run(cluster, poll_until):
    first_signal, second_signal = Signal.remote(), Signal.remote()
    s = SerialGate.remote()
    first = s.blocked.remote(first_signal, second_signal)
    # The actor is now blocked in its first get(); `quick` is queued behind it...
    poll_until(lambda: actorflow.get(first_signal.num_waiters.remote()) == 1, timeout=30)
    second = s.quick.remote()
    # ...and is still queued when the actor blocks in get() a second time.
    actorflow.get(first_signal.send.remote())
    poll_until(lambda: actorflow.get(second_signal.num_waiters.remote()) == 1, timeout=30)
    ready, _ = actorflow.wait([second], timeout=0)
    assert ready == []  # a default actor runs one call at a time
    actorflow.get(second_signal.send.remote())
    assert actorflow.get(first, timeout=30) == "done"
    assert actorflow.get(second, timeout=5) == ["blocked-start", "between", "blocked-end", "quick"]


# -- concurrency groups -----------------------------------------------------------------------


@actorflow.remote(concurrency_groups={"io": 2})
class Grouped:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.io_started = 0
        self.barrier = threading.Barrier(2, timeout=20)
        self.release = threading.Event()

    @actorflow.method(concurrency_group="io")
    def io_meet(self) -> int:
        return self.barrier.wait()

    @actorflow.method(concurrency_group="io")
    def io_block(self) -> str:
        with self.lock:
            self.io_started += 1
        assert self.release.wait(30)
        return "io done"

    def default_stats(self) -> int:
        with self.lock:
            return self.io_started

    def open(self) -> None:
        self.release.set()


def test_concurrency_group_runs_its_limit_at_once(cluster):
    g = Grouped.remote()
    assert sorted(actorflow.get([g.io_meet.remote() for _ in range(2)], timeout=40)) == [0, 1]


def test_concurrency_group_limit_and_independence_from_default(cluster, poll_until):
    g = Grouped.remote()
    refs = [g.io_block.remote() for _ in range(4)]
    # The default group still runs while both "io" threads are blocked.
    poll_until(lambda: actorflow.get(g.default_stats.remote(), timeout=30) >= 2, timeout=30)
    assert actorflow.get(g.default_stats.remote()) == 2  # the other two wait for a thread
    actorflow.get(g.open.remote())
    assert actorflow.get(refs, timeout=30) == ["io done"] * 4
    assert actorflow.get(g.default_stats.remote()) == 4


@actorflow.remote(concurrency_groups={"io": 2, "cpu": 1})
class AsyncGrouped:
    def __init__(self) -> None:
        self.io_started = 0
        self.release = asyncio.Event()

    @actorflow.method(concurrency_group="io")
    async def io_block(self) -> str:
        self.io_started += 1
        await asyncio.wait_for(self.release.wait(), 30)
        return "io done"

    @actorflow.method(concurrency_group="cpu")
    async def cpu(self) -> int:
        return self.io_started

    async def open(self) -> None:
        self.release.set()


def test_async_concurrency_groups(cluster, poll_until):
    g = AsyncGrouped.remote()
    refs = [g.io_block.remote() for _ in range(5)]
    assert poll_until(lambda: actorflow.get(g.cpu.remote()) >= 2, timeout=30)
    assert actorflow.get(g.cpu.remote()) == 2
    actorflow.get(g.open.remote())
    assert actorflow.get(refs, timeout=30) == ["io done"] * 5


def test_undeclared_concurrency_group_is_rejected(cluster):
    @actorflow.remote(concurrency_groups={"io": 1})
    class Bad:
        @actorflow.method(concurrency_group="nope")
        def f(self) -> None:
            pass

    with pytest.raises(ValueError, match="nope"):
        Bad.remote()


def test_invalid_max_concurrency_is_rejected(cluster):
    with pytest.raises(ValueError, match="max_concurrency"):
        AsyncRendezvous.options(max_concurrency=0)
