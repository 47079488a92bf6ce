"""actorflow.util.multiprocessing.Pool: the stdlib's multiprocessing.Pool API on actors.

Work that must not finish yet waits for a file gate (helpers.wait_for_file), so every "not
ready", timeout and ordering below is decided by the test. The cluster is the shared one
(num_cpus=4) of tests/conftest.py.
"""

from __future__ import annotations

import itertools
import os
import threading

import pytest
from helpers import poll_until, touch, wait_for_file

import actorflow
from actorflow.exceptions import ActorDiedError
from actorflow.util.multiprocessing import Pool, TimeoutError
from actorflow.util.state import list_actors

pytestmark = pytest.mark.timeout(90)

SHORT = 0.2  # a timeout for work that is blocked on a gate and so cannot finish


def square(x):
    return x * x


def add(a, b, c=0):
    return a + b + c


def pid(_=None):
    return os.getpid()


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def gated(x, gate):
    wait_for_file(gate)
    return x


def gated_item(item):
    """(x, gate): returns x once gate exists ("" means at once)."""
    x, gate = item
    if gate:
        wait_for_file(gate)
    return x


def rendezvous(paths):
    mine, other = paths
    touch(mine)
    wait_for_file(other, timeout=20)
    return os.path.basename(mine)


_initialized = None


def set_initialized(value):
    global _initialized
    _initialized = value


def read_initialized(_=None):
    return _initialized


def broken_initializer():
    raise RuntimeError("initializer broke")


@pytest.fixture
def pool(cluster):
    p = Pool(processes=2)
    yield p
    p.terminate()
    p.join()


def pool_actors():
    return list_actors(filters=[("class_name", "=", "PoolActor"), ("state", "=", "ALIVE")])


# -- results -------------------------------------------------------------------------------------


def test_apply_map_starmap_return_the_results_in_order(pool):
    assert pool.apply(square, (7,)) == 49
    assert pool.apply(add, (1, 2), {"c": 3}) == 6
    assert pool.map(square, range(10)) == [x * x for x in range(10)]
    assert pool.map(square, (x for x in range(5)), chunksize=2) == [0, 1, 4, 9, 16]
    assert pool.map(square, []) == []
    assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.map_async(square, range(3)).get(timeout=30) == [0, 1, 4]
    assert pool.starmap_async(add, [(1, 1)]).get(timeout=30) == [2]
    assert list(pool.imap(square, range(7), chunksize=3)) == [x * x for x in range(7)]
    assert sorted(pool.imap_unordered(square, range(7))) == sorted(x * x for x in range(7))


def test_the_work_is_spread_over_the_processes(pool, tmp_path):
    # Each item waits until the other has started: they finish only if both run at once.
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert pool.map(rendezvous, [(a, b), (b, a)], chunksize=1) == [os.path.basename(a), "b"]


def test_processes_defaults_to_the_cluster_cpus(cluster):
    poll_until(lambda: not pool_actors(), timeout=30)  # earlier tests' pools are gone
    with Pool() as p:
        assert p.apply(square, (3,)) == 9
        assert len(pool_actors()) == 4  # the shared cluster has 4 CPUs


def test_async_result_get_wait_ready_successful(pool, tmp_path):
    gate = str(tmp_path / "gate")
    result = pool.apply_async(gated, (5, gate))
    assert not result.ready()
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    with pytest.raises(TimeoutError):
        result.get(timeout=SHORT)
    result.wait(SHORT)
    assert not result.ready()
    touch(gate)
    assert result.get(timeout=30) == 5
    assert result.ready() and result.successful()
    assert issubclass(TimeoutError, Exception)
    import multiprocessing

    assert TimeoutError is multiprocessing.TimeoutError


def test_an_exception_is_raised_again_as_its_type_with_the_remote_traceback(pool):
    with pytest.raises(ValueError, match="bad value 3") as info:
        pool.apply(fail_on, (3,))
    assert "fail_on" in str(info.value.__cause__)  # the remote traceback
    result = pool.apply_async(fail_on, (3,))
    result.wait(30)
    assert result.ready() and not result.successful()
    with pytest.raises(ValueError, match="bad value 3"):
        pool.map(fail_on, range(6))
    with pytest.raises(ValueError, match="bad value 3"):
        pool.starmap(fail_on, [(1,), (3,)])


def test_callbacks_run_before_the_result_is_ready(pool):
    got, errors = [], []
    pool.apply_async(square, (4,), callback=got.append).get(timeout=30)
    pool.map_async(square, range(3), callback=got.append).get(timeout=30)
    failed = pool.apply_async(fail_on, (3,), callback=got.append, error_callback=errors.append)
    failed.wait(30)
    assert got == [16, [0, 1, 4]]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    failed_map = pool.map_async(fail_on, range(5), error_callback=errors.append)
    failed_map.wait(30)
    assert len(errors) == 2 and not failed_map.successful()


def test_imap_keeps_the_input_order_and_imap_unordered_the_completion_order(pool, tmp_path):
    gate = str(tmp_path / "gate")
    items = [(0, gate), (1, "")]
    unordered = pool.imap_unordered(gated_item, items)
    assert unordered.next(timeout=30) == 1  # 0 is still blocked
    ordered = pool.imap(gated_item, items)
    with pytest.raises(TimeoutError):
        ordered.next(timeout=SHORT)  # 1 is done, but 0 comes first
    touch(gate)
    assert list(ordered) == [0, 1]
    assert list(unordered) == [0]


def test_imap_raises_an_items_exception_at_its_place_and_goes_on(pool):
    it = pool.imap(fail_on, range(5))
    assert [next(it), next(it), next(it)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad value 3"):
        next(it)
    assert list(it) == [4]


def test_imap_reads_an_endless_input_as_results_are_taken(pool):
    it = pool.imap(square, itertools.count())
    assert [next(it) for _ in range(20)] == [x * x for x in range(20)]


# -- the pool's life --------------------------------------------------------------------------


def test_close_lets_submitted_work_finish_and_join_waits_for_it(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    p = Pool(processes=2)
    result = p.apply_async(gated, (1, gate))
    mapped = p.map_async(square, range(4))
    with pytest.raises(ValueError, match="still running"):
        p.join()
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(square, (2,))
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])
    with pytest.raises(ValueError, match="Pool not running"):
        p.imap(square, [1])
    joined = threading.Event()
    threading.Thread(target=lambda: (p.join(), joined.set()), daemon=True).start()
    assert not joined.wait(SHORT)  # the gated call is still running
    touch(gate)
    assert joined.wait(30)
    assert result.get(timeout=0) == 1 and mapped.get(timeout=0) == [0, 1, 4, 9]


def test_join_after_close_ends_the_processes(cluster):
    p = Pool(processes=2)
    pids = set(p.map(pid, range(4), chunksize=1))
    p.close()
    p.join()
    poll_until(lambda: all(_gone(x) for x in pids), timeout=30)


def test_terminate_stops_the_work_and_fails_what_was_not_done(cluster, tmp_path):
    p = Pool(processes=2)
    result = p.apply_async(gated, (1, str(tmp_path / "never")))
    p.terminate()
    with pytest.raises(ActorDiedError):
        result.get(timeout=30)
    p.join()
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(square, (1,))


def test_the_context_manager_terminates_the_pool(cluster):
    with Pool(processes=2) as p:
        assert p.map(square, [1, 2]) == [1, 4]
        pids = set(p.map(pid, range(4)))
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(square, (1,))
    poll_until(lambda: all(_gone(x) for x in pids), timeout=30)


def test_the_initializer_runs_in_every_process(cluster):
    with Pool(processes=2, initializer=set_initialized, initargs=("ready",)) as p:
        assert set(p.map(read_initialized, range(6), chunksize=1)) == {"ready"}


def test_a_failing_initializer_fails_the_constructor(cluster):
    with pytest.raises(Exception, match="initializer broke"):
        Pool(processes=1, initializer=broken_initializer)


def test_maxtasksperchild_replaces_a_process_after_that_many_tasks(cluster):
    with Pool(processes=1, maxtasksperchild=2) as p:
        results = [p.apply_async(pid) for _ in range(6)]
        pids = [r.get(timeout=30) for r in results]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]
    assert len(set(pids)) == 3


def _gone(process_id: int) -> bool:
    try:
        with open(f"/proc/{process_id}/status") as f:
            return any(line.split()[1] in ("Z", "X") for line in f if line.startswith("State:"))
    except OSError:
        return True


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"processes": 0}, ValueError, "must be >0"),
        ({"processes": 99}, ValueError, "only 4 CPUs"),
        ({"processes": "2"}, TypeError, "processes must be an int"),
        ({"maxtasksperchild": 0}, ValueError, "maxtasksperchild"),
        ({"initializer": 3}, TypeError, "initializer must be a callable"),
        ({"ray_address": "a:1", "address": "b:2"}, ValueError, "differ"),
    ],
)
def test_bad_arguments_are_named(cluster, kwargs, error, match):
    with pytest.raises(error, match=match):
        Pool(**kwargs)


def test_bad_chunksize_is_named(pool):
    with pytest.raises(ValueError, match="Chunksize must be 1"):
        pool.map(square, [1], chunksize=0)
    with pytest.raises(ValueError, match="Chunksize must be 1"):
        pool.imap(square, [1], chunksize=-1)


def test_a_pool_without_a_cluster_starts_one(no_cluster):
    with Pool(processes=2) as p:
        assert p.map(square, [3]) == [9]
        assert actorflow.cluster_resources()["CPU"] == 2
