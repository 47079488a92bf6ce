"""Lifetimes of objects that ride along with actors and streams: a large constructor argument
outlives a restart, refs yielded by a generator stay readable, and a by-value argument read by
an actor that keeps the value keeps its memory valid after the call."""

from __future__ import annotations

import os

import numpy as np
import pytest

import actorflow


def _store():
    return actorflow._private.worker.context.session().store


@actorflow.remote(max_restarts=1)
class Holder:
    def __init__(self, array):
        self.array = array

    def total(self):
        return float(self.array.sum())

    def pid(self):
        return os.getpid()


def test_large_constructor_argument_survives_a_restart(cluster, poll_until):
    array = np.arange(1_000_000, dtype=np.float64)  # 8 MB: goes to the object store
    holder = Holder.remote(array)
    expected = float(array.sum())
    assert actorflow.get(holder.total.remote(), timeout=30) == expected
    pid = actorflow.get(holder.pid.remote(), timeout=30)
    os.kill(pid, 9)
    # The restarted actor rebuilds from the same arguments.
    poll_until(lambda: _safe_total(holder) == expected, timeout=30)
    assert actorflow.get(holder.pid.remote(), timeout=30) != pid


def _safe_total(holder):
    try:
        return actorflow.get(holder.total.remote(), timeout=10)
    except actorflow.exceptions.ActorError:
        return None


@actorflow.remote
def make_refs(n):
    for i in range(n):
        yield actorflow.put(np.full(200_000, i, dtype=np.int64))  # 1.6 MB each


@actorflow.remote
def refs_inside_items(n):
    for i in range(n):
        yield [actorflow.put(np.full(200_000, i, dtype=np.int64))]


def test_refs_yielded_by_a_generator_stay_readable(cluster):
    values = []
    for item_ref in refs_inside_items.remote(3):
        inner = actorflow.get(item_ref, timeout=30)[0]
        values.append(int(actorflow.get(inner, timeout=30)[0]))
    assert values == [0, 1, 2]


@actorflow.remote
class Keeper:
    def __init__(self):
        self.kept = None

    def keep(self, array):
        self.kept = array
        return True

    def first(self):
        return int(self.kept[0]), bool(self.kept.flags.writeable)

    def drop(self):
        self.kept = None
        return True


def test_a_kept_by_value_argument_stays_valid_after_the_call(make_cluster, poll_until):
    make_cluster(num_cpus=1)  # a store of its own: nothing else comes and goes meanwhile
    baseline = _store().state.stats()["in_use"]
    keeper = Keeper.remote()
    assert actorflow.get(keeper.keep.remote(np.full(500_000, 7, dtype=np.int64)), timeout=30)
    # The call is over and the caller's pin is gone, but the actor still views the memory.
    assert actorflow.get(keeper.first.remote(), timeout=30) == (7, False)
    assert _store().state.stats()["in_use"] > baseline
    assert actorflow.get(keeper.drop.remote(), timeout=30)
    poll_until(
        lambda: _store().state.stats()["in_use"] == baseline,
        timeout=15,
        message="the argument's segment was not released after the actor let go",
    )
    actorflow.kill(keeper)


@pytest.mark.parametrize("size", [100 * 1024 + 1, 3 * 1024 * 1024])
def test_large_bytes_and_str_round_trip(cluster, size):
    blob = os.urandom(size)
    text = "é" * size
    assert actorflow.get(actorflow.put(blob), timeout=30) == blob
    assert actorflow.get(actorflow.put(text), timeout=30) == text

    @actorflow.remote
    def echo(value):
        return value

    assert actorflow.get(echo.remote(blob), timeout=30) == blob
