"""Watching actors: state changes through the public API (async and sync iteration, callbacks,
from the driver and from inside an actor), on the embedded cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

import actorflow

pytestmark = pytest.mark.timeout(90)


@actorflow.remote(max_restarts=1)
class Phoenix:
    def pid(self) -> int:
        return os.getpid()


@actorflow.remote
class Watcher:
    async def start(self, handle) -> tuple:
        """Start watching; the first event (the state now)."""
        self.watch = actorflow.watch(handle)
        first = await self.watch.__anext__()
        return first.state, first.restarts

    async def rest(self) -> list:
        return [(e.state, e.restarts) async for e in self.watch]


def _kill_process(handle) -> None:
    os.kill(actorflow.get(handle.pid.remote(), timeout=30), signal.SIGKILL)


def test_async_watch_sees_restart_and_death(cluster):
    actor = Phoenix.remote()
    actorflow.get(actor.pid.remote(), timeout=30)

    async def collect() -> list:
        events = []
        async for event in actorflow.watch(actor):
            events.append(event)
            if event.state == "ALIVE" and event.restarts == 0:
                await asyncio.get_running_loop().run_in_executor(None, _kill_process, actor)
            elif event.state == "ALIVE" and event.restarts == 1:
                actorflow.kill(actor)
        return events

    events = asyncio.run(asyncio.wait_for(collect(), 60))
    assert [(e.state, e.restarts) for e in events] == [
        ("ALIVE", 0),
        ("RESTARTING", 1),
        ("ALIVE", 1),
        ("DEAD", 1),
    ]
    assert "exited" in events[1].cause or "died" in events[1].cause
    assert "kill" in events[-1].cause
    assert (events[1].kind, events[-1].kind) == ("crashed", "killed")
    assert all(e.actor_id == actor._actor_id for e in events)
    assert [e.version for e in events] == sorted(e.version for e in events)


def test_sync_watch_of_a_dead_or_unknown_actor_ends_at_once(cluster):
    actor = Phoenix.remote()
    actorflow.get(actor.pid.remote(), timeout=30)
    actorflow.kill(actor)
    events = list(actorflow.watch(actor))
    assert [e.state for e in events] == ["DEAD"]
    unknown = list(actorflow.watch("0" * 32))
    assert [e.state for e in unknown] == ["DEAD"]
    assert "no actor" in unknown[0].cause and unknown[0].kind == "unknown"
    assert events[0].kind == "killed"


def test_callback_watch_and_stop(cluster, poll_until):
    actor = Phoenix.remote()
    actorflow.get(actor.pid.remote(), timeout=30)
    seen: list = []
    lock = threading.Lock()

    def on_event(event) -> None:
        with lock:
            seen.append(event.state)

    watch = actorflow.watch(actor, callback=on_event)
    poll_until(lambda: seen == ["ALIVE"], timeout=30)
    _kill_process(actor)
    poll_until(lambda: seen[-1:] == ["ALIVE"] and "RESTARTING" in seen, timeout=30)
    watch.stop()
    actorflow.kill(actor)
    second = list(actorflow.watch(actor))
    assert second[-1].state == "DEAD"
    assert seen == ["ALIVE", "RESTARTING", "ALIVE"]  # stopped: the death was not delivered


def test_async_callback_runs_on_the_runtime_loop(cluster, poll_until):
    actor = Phoenix.remote()
    actorflow.get(actor.pid.remote(), timeout=30)
    seen: list = []

    async def on_event(event) -> None:
        await asyncio.sleep(0)
        seen.append(event.state)

    actorflow.watch(actor, callback=on_event)
    actorflow.kill(actor)
    poll_until(lambda: seen and seen[-1] == "DEAD", timeout=30)


def test_an_actor_watches_another(cluster, poll_until):
    watched = Phoenix.remote()
    first_pid = actorflow.get(watched.pid.remote(), timeout=30)
    watcher = Watcher.remote()
    assert actorflow.get(watcher.start.remote(watched), timeout=30) == ("ALIVE", 0)
    states = watcher.rest.remote()
    _kill_process(watched)

    def restarted() -> bool:
        try:
            return actorflow.get(watched.pid.remote(), timeout=30) != first_pid
        except actorflow.exceptions.ActorError:
            return False  # a call that reached the old process as it died

    poll_until(restarted, timeout=30)
    actorflow.kill(watched)
    assert actorflow.get(states, timeout=60) == [("RESTARTING", 1), ("ALIVE", 1), ("DEAD", 1)]


def test_watch_rejects_what_is_not_an_actor(cluster):
    with pytest.raises(TypeError, match="actor handle"):
        actorflow.watch(42)
