"""Chaos: work goes on while worker processes are killed at random."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

import actorflow

pytestmark = pytest.mark.timeout(240)


@actorflow.remote(max_retries=-1)
def square(i: int) -> tuple[int, int]:
    time.sleep(0.002)  # long enough for the run to span dozens of kills
    return i, i * i


def test_5000_tasks_while_workers_are_killed_every_100ms(make_cluster, worker_processes):
    """Every result arrives, each exactly once, although random workers are SIGKILLed every
    100 ms throughout (tasks are retried; a result is delivered once per task)."""
    make_cluster(num_cpus=2)
    actorflow.get([square.remote(i) for i in range(20)], timeout=60)  # workers are up
    stop = threading.Event()
    killed: list[int] = []
    rng = random.Random(7)

    def killer() -> None:
        while not stop.wait(0.1):
            pids = sorted(worker_processes())
            if pids:
                pid = rng.choice(pids)
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        refs = [square.remote(i) for i in range(5000)]
        results = actorflow.get(refs, timeout=200)
    finally:
        stop.set()
        thread.join()
    assert results == [(i, i * i) for i in range(5000)]
    assert len(killed) >= 5, f"the chaos was too mild to mean anything: {len(killed)} kills"


@actorflow.remote(max_restarts=-1, max_task_retries=-1)
class PersistedCounter:
    """Keeps its count in a file: each incarnation starts from what the last one saved."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path) as f:
                self.count = int(f.read())
        except FileNotFoundError:
            self.count = 0

    def add(self, n: int) -> int:
        self.count += n
        with open(self.path + ".tmp", "w") as f:
            f.write(str(self.count))
        os.replace(self.path + ".tmp", self.path)
        return self.count

    def pid(self) -> int:
        return os.getpid()


def test_a_persisted_actors_state_survives_20_kills(make_cluster, tmp_path):
    make_cluster(num_cpus=2)
    counter = PersistedCounter.remote(str(tmp_path / "count"))
    pids = set()
    for round_ in range(20):
        assert actorflow.get(counter.add.remote(1), timeout=60) == round_ + 1
        pid = actorflow.get(counter.pid.remote(), timeout=60)
        assert pid not in pids  # a new incarnation each round
        pids.add(pid)
        os.kill(pid, signal.SIGKILL)
    assert actorflow.get(counter.add.remote(0), timeout=60) == 20
