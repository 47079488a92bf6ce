"""Progress bars: actorflow.util.progress and as_completed, ActorPool.map(progress=...), and the
distributed tqdm (actorflow.experimental.tqdm_ray) whose bars the driver draws."""

from __future__ import annotations

import re
from typing import Any

import pytest

import actorflow
from actorflow.experimental import tqdm_ray
from actorflow.util import ActorPool
from actorflow.util.progress import as_completed, progress

pytestmark = pytest.mark.timeout(90)


@actorflow.remote
def double(x: int) -> int:
    return 2 * x


@actorflow.remote
def broken() -> None:
    raise KeyError("gone")


@actorflow.remote
class Doubler:
    def run(self, x: int) -> int:
        return 2 * x


@actorflow.remote
def counted(name: str, n: int) -> int:
    for i in tqdm_ray.tqdm(range(n), desc=name, flush_interval_s=0):
        print(f"line {i} of {name}")
    return n


def _bars(err: str) -> str:
    return err.replace("\r", "\n")


def test_progress_returns_values_in_order_with_a_bar(cluster: Any, capsys: Any) -> None:
    refs = [double.remote(i) for i in range(12)]
    assert progress(refs, desc="doubling") == [2 * i for i in range(12)]
    err = _bars(capsys.readouterr().err)
    assert "doubling" in err and "12/12" in err
    done = list(as_completed([double.remote(i) for i in range(5)]))
    assert sorted(actorflow.get(done)) == [0, 2, 4, 6, 8]
    with pytest.raises(KeyError):
        progress([double.remote(1), broken.remote()])
    with pytest.raises(TypeError, match="item 1 is a int"):
        progress([double.remote(1), 5])


def test_actor_pool_map_with_progress(cluster: Any, capsys: Any) -> None:
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    fn = lambda actor, v: actor.run.remote(v)  # noqa: E731
    assert list(pool.map(fn, range(6), progress=True)) == [0, 2, 4, 6, 8, 10]
    assert "6/6" in _bars(capsys.readouterr().err)
    assert sorted(pool.map_unordered(fn, range(4), progress="mapping")) == [0, 2, 4, 6]
    assert "mapping" in _bars(capsys.readouterr().err)
    assert list(pool.map(fn, [1])) == [2]  # off by default: no bar
    assert "it/s" not in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress must be a bool"):
        pool.map(fn, [1], progress=3)  # type: ignore[arg-type]


def test_tqdm_ray_bars_from_tasks_are_drawn_by_the_driver(cluster: Any, capsys: Any) -> None:
    assert actorflow.get([counted.remote("alpha", 5), counted.remote("beta", 3)]) == [5, 3]
    # Forwarded output and the last bar states arrive one way: poll until both are printed.
    import time

    deadline, out, err = time.monotonic() + 20, "", ""
    while time.monotonic() < deadline:
        captured = capsys.readouterr()
        out, err = out + captured.out, err + _bars(captured.err)
        if "line 4 of alpha" in out and "5/5" in err and "3/3" in err:
            break
        time.sleep(0.05)
    assert re.search(r"alpha \(counted pid=\d+\).*5/5", err), err
    assert re.search(r"beta \(counted pid=\d+\).*3/3", err), err
    # Each forwarded line is whole, prefixed with where it ran, and holds no bar.
    lines = [line for line in out.splitlines() if "line " in line]
    assert len(lines) == 8
    assert all(re.fullmatch(r"\(counted pid=\d+\) line \d of (alpha|beta)", x) for x in lines)


def test_tqdm_ray_in_the_driver_and_its_api(cluster: Any, capsys: Any) -> None:
    bar = tqdm_ray.tqdm(desc="local", total=4)
    bar.update(2)
    bar.set_description("renamed")
    bar.update(2)
    bar.close()
    err = _bars(capsys.readouterr().err)
    assert "renamed" in err and "4/4" in err
    empty = tqdm_ray.tqdm(total=1)
    with pytest.raises(TypeError, match="no iterable"):
        next(iter(empty))
    assert empty._closed  # iterating closed it
    with pytest.raises(ValueError, match="flush_interval_s"):
        tqdm_ray.tqdm(total=1, flush_interval_s=-1)
    tqdm_ray.safe_print("plain", "words")
    assert "plain words" in capsys.readouterr().out
