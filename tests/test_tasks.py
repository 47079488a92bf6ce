"""Tasks: @remote, .remote(), .options(), num_returns, resources, argument resolution, nested
tasks, retries, async functions, remote generators, and worker output reaching the driver."""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import signal
import time

import pytest
from helpers import gated, touch, wait_for_file

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)


# -- helpers that run inside workers ------------------------------------------------------------


def count_attempt(path: str) -> int:
    """Append one mark to path; return how many attempts (marks) there are now."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        return len(f.read())


# -- remote functions ---------------------------------------------------------------------------


@actorflow.remote
def add(a, b):
    return a + b


@actorflow.remote(num_cpus=1, max_retries=0)
def mul(a, b):
    return a * b


@actorflow.remote(num_returns=2)
def divmod_task(a, b):
    return divmod(a, b)


@actorflow.remote
def with_defaults(a, b=10, *, c=100):
    return a + b + c


@actorflow.remote
def identity(x):
    return x


@actorflow.remote
def counted_gated(attempts: str, gate: str):
    attempt = count_attempt(attempts)
    wait_for_file(gate)
    return attempt


@actorflow.remote
def timed_gated(gate: str | None, started: str | None = None):
    start = time.monotonic()
    if started:
        touch(started)
    if gate:
        wait_for_file(gate)
    return start, time.monotonic()


@actorflow.remote
def barrier(directory: str, me: int, parties: int):
    """Returns only once `parties` tasks are running at the same time."""
    touch(os.path.join(directory, f"arrived-{me}"))
    deadline = time.monotonic() + 30
    while len(glob.glob(os.path.join(directory, "arrived-*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("not all parties arrived: tasks did not run concurrently")
        time.sleep(0.005)
    return me


@actorflow.remote
def getpid():
    return os.getpid()


@actorflow.remote
def describe_args(top, nested, *, kw):
    return type(top).__name__, type(nested[0]).__name__, type(kw).__name__


@actorflow.remote
def get_nested(nested):
    return actorflow.get(nested[0]) * 2


@actorflow.remote
def child(x):
    return x + 1


@actorflow.remote
def parent(n):
    return sum(actorflow.get([child.remote(i) for i in range(n)]))


@actorflow.remote
def parent_returning_refs(n):
    return [child.remote(i) for i in range(n)]


@actorflow.remote
def chain(depth):
    if depth == 0:
        return 0
    return actorflow.get(chain.remote(depth - 1)) + 1


@actorflow.remote
def crash_until(path: str, crashes: int):
    attempt = count_attempt(path)
    if attempt <= crashes:
        os._exit(1)
    return attempt


@actorflow.remote
def raise_until(path: str, failures: int, exc_type=ValueError):
    attempt = count_attempt(path)
    if attempt <= failures:
        raise exc_type(f"attempt {attempt}")
    return attempt


@actorflow.remote(max_retries=1)
def wait_to_be_killed(pid_file: str, attempts: str):
    if count_attempt(attempts) == 1:
        touch(pid_file, str(os.getpid()))
        time.sleep(60)
    return "second attempt"


@actorflow.remote
async def async_task(x):
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)
    return x * 2, loop.is_running(), os.getpid()


@actorflow.remote
def gen_numbers(n: int, gate: str | None = None):
    for i in range(n):
        yield i
        if i == 0 and gate:
            wait_for_file(gate)


@actorflow.remote
def gen_counting_then_fail(path, count):
    attempt = count_attempt(path)
    yield from range(count)
    raise ValueError(f"attempt {attempt} failed after {count} items")


@actorflow.remote
def gen_then_fail(n: int):
    yield from range(n)
    raise ValueError("generator failed after items")


@actorflow.remote
async def async_gen(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield i * i


@actorflow.remote
async def async_gen_then_fail(n: int):
    for i in range(n):
        yield i
    raise KeyError("async generator failed")


@actorflow.remote
def print_marker(marker: str):
    print(marker)
    return os.getpid()


@actorflow.remote
async def async_print_marker(marker: str):
    print(marker)
    return os.getpid()


@actorflow.remote
def log_marker(marker: str):
    logging.getLogger("user.code").warning(marker)
    return os.getpid()


# -- defining and calling -----------------------------------------------------------------------


def test_remote_without_options(cluster):
    assert actorflow.get(add.remote(1, 2)) == 3


def test_remote_with_options(cluster):
    assert actorflow.get(mul.remote(6, 7)) == 42
    q, r = divmod_task.remote(17, 5)
    assert actorflow.get([q, r]) == [3, 2]


def test_remote_function_cannot_be_called_directly(cluster):
    with pytest.raises(TypeError, match=r"\.remote"):
        add(1, 2)


def test_remote_returns_a_ref_before_the_task_finishes(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    ref = gated.remote(gate, "done")
    assert isinstance(ref, actorflow.ObjectRef)
    ready, not_ready = actorflow.wait([ref], timeout=0)
    assert ready == [] and not_ready == [ref]
    touch(gate)
    assert actorflow.get(ref, timeout=30) == "done"


def test_kwargs_and_defaults(cluster):
    assert actorflow.get(with_defaults.remote(1)) == 111
    assert actorflow.get(with_defaults.remote(1, 2, c=3)) == 6
    assert actorflow.get(with_defaults.remote(a=1, b=2)) == 103


def test_options_returns_a_changed_copy(cluster):
    two = identity.options(num_returns=2)
    refs = two.remote((1, 2))
    assert isinstance(refs, list) and len(refs) == 2
    assert actorflow.get(refs) == [1, 2]
    # The original is unchanged.
    single = identity.remote((1, 2))
    assert isinstance(single, actorflow.ObjectRef)
    assert actorflow.get(single) == (1, 2)


def test_num_returns_zero_gives_none(cluster):
    assert identity.options(num_returns=0).remote(None) is None


def test_num_returns_mismatch_is_a_task_error(cluster):
    ref_a, ref_b = identity.options(num_returns=2).remote((1, 2, 3))
    with pytest.raises(exceptions.TaskError, match="num_returns=2"):
        actorflow.get(ref_a)
    with pytest.raises(exceptions.TaskError):
        actorflow.get(ref_b)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"bogus": 1}, ValueError),
        ({"num_cpus": -1}, ValueError),
        ({"num_returns": "many"}, ValueError),
        ({"max_retries": 1.5}, ValueError),
        ({"retry_exceptions": [42]}, TypeError),
        ({"resources": {"CPU": 1}}, ValueError),
    ],
)
def test_bad_options_fail_where_written(options, error):
    with pytest.raises(error):
        add.options(**options)
    with pytest.raises(error):
        actorflow.remote(**options)(lambda: None)


# -- arguments ----------------------------------------------------------------------------------


def test_top_level_refs_are_resolved_before_the_task_runs(cluster):
    stored = actorflow.put(20)
    assert actorflow.get(add.remote(stored, 1), timeout=30) == 21
    assert actorflow.get(add.remote(1, b=stored), timeout=30) == 21
    computed = add.remote(1, 1)
    assert actorflow.get(add.remote(computed, 10), timeout=30) == 12
    # Chains of dependencies, submitted before any of them ran.
    ref = add.remote(0, 0)
    for _ in range(5):
        ref = add.remote(ref, 1)
    assert actorflow.get(ref, timeout=30) == 5


def test_several_top_level_refs_are_resolved(cluster):
    stored = actorflow.put(20)
    computed = add.remote(1, 1)
    assert actorflow.get(add.remote(stored, computed), timeout=10) == 22
    assert actorflow.get(add.remote(a=computed, b=stored), timeout=10) == 22
    assert actorflow.get(add.remote(stored, stored), timeout=10) == 40


def test_task_with_a_ready_ref_argument_runs_once(make_cluster, tmp_path, poll_until, monkeypatch):
    # Keep idle leases for long, so that the driver holds an idle worker when it submits.
    monkeypatch.setenv("ACTORFLOW_LEASE_IDLE_SECONDS", "30")
    make_cluster(num_cpus=2)
    assert actorflow.get(add.remote(1, 2), timeout=30) == 3
    attempts, gate = tmp_path / "n", tmp_path / "gate"
    ref = counted_gated.remote(actorflow.put(str(attempts)), str(gate))
    poll_until(attempts.exists, timeout=30)
    # Grace period for a duplicate run to show itself (the task cannot finish: gate closed).
    ready, _ = actorflow.wait([ref], timeout=1.0)
    touch(str(gate))
    assert actorflow.get(ref, timeout=30) == 1
    assert len(attempts.read_text()) == 1


def test_nested_refs_are_passed_as_refs(cluster):
    stored = actorflow.put(21)
    assert actorflow.get(describe_args.remote(1, [stored], kw=stored), timeout=30) == (
        "int",
        "ObjectRef",
        "int",
    )
    assert actorflow.get(get_nested.remote([stored]), timeout=30) == 42
    # A nested ref to a task result that is not ready yet also arrives as a ref.
    assert actorflow.get(get_nested.remote([add.remote(1, 2)]), timeout=30) == 6


def test_nested_ref_outlives_the_drivers_own_ref(cluster):
    import gc

    stored = actorflow.put(b"payload" * 1000)
    waiting = get_nested.remote([stored])
    del stored
    gc.collect()
    assert actorflow.get(waiting, timeout=30) == b"payload" * 2000


# -- parallelism and resources ------------------------------------------------------------------


def test_tasks_run_in_parallel_on_the_cpus(cluster, tmp_path):
    refs = [barrier.remote(str(tmp_path), i, 4) for i in range(4)]
    assert actorflow.get(refs, timeout=45) == [0, 1, 2, 3]


def test_unschedulable_request_fails_at_once(cluster):
    for options in ({"num_cpus": 5}, {"num_gpus": 1}, {"resources": {"gizmo": 1}}):
        ref = add.options(**options).remote(1, 2)
        with pytest.raises(exceptions.TaskUnschedulableError):
            actorflow.get(ref, timeout=10)
    # The cluster keeps serving.
    assert actorflow.get(add.remote(1, 2)) == 3


def test_cluster_resources_are_what_init_was_given(make_cluster, poll_until):
    make_cluster(num_cpus=2, num_gpus=1, resources={"widget": 1})
    full = {"CPU": 2.0, "GPU": 1.0, "widget": 1.0}
    full["memory"] = actorflow.cluster_resources()["memory"]  # a share of RAM, as in Ray
    assert full["memory"] > 0
    assert actorflow.cluster_resources() == full
    assert actorflow.get(add.options(num_gpus=1, resources={"widget": 1}).remote(1, 2)) == 3
    # Resources come back once the task is done and its lease returned.
    poll_until(lambda: actorflow.available_resources() == full, timeout=10)


def test_task_waits_for_its_resources(make_cluster, tmp_path, poll_until):
    make_cluster(num_cpus=2, resources={"widget": 1})
    gate, started = str(tmp_path / "gate"), str(tmp_path / "started")
    first = timed_gated.options(resources={"widget": 1}).remote(gate, started)
    poll_until(lambda: os.path.exists(started), timeout=30)
    assert actorflow.available_resources().get("widget", 0) == 0
    second = timed_gated.options(resources={"widget": 1}).remote(None)
    # A CPU is free, but the widget is not: the second task must not start meanwhile.
    ready, _ = actorflow.wait([second], timeout=1.0)
    assert ready == []
    touch(gate)
    (_, first_end), (second_start, _) = actorflow.get([first, second], timeout=30)
    assert second_start >= first_end


def test_fractional_cpus_share_a_cpu(make_cluster, tmp_path):
    make_cluster(num_cpus=2)
    refs = [barrier.options(num_cpus=0.5).remote(str(tmp_path), i, 4) for i in range(4)]
    assert sorted(actorflow.get(refs, timeout=45)) == [0, 1, 2, 3]


def test_worker_processes_do_not_outnumber_cpus(make_cluster, tmp_path, worker_processes):
    """Workers are pre-started up to num_cpus; a burst of short tasks reuses them."""
    make_cluster(num_cpus=2)
    # Both pre-started workers are up once two tasks run at the same time.
    assert actorflow.get([barrier.remote(str(tmp_path), i, 2) for i in range(2)], timeout=45) == [
        0,
        1,
    ]
    pids = set(actorflow.get([getpid.remote() for _ in range(20)], timeout=30))
    workers = worker_processes()
    assert pids <= workers
    assert len(workers) == 2


def test_burst_right_after_init_does_not_spawn_extra_workers(make_cluster, worker_processes):
    """Tasks submitted while the pre-started workers are still starting wait for them."""
    make_cluster(num_cpus=2)
    actorflow.get([getpid.remote() for _ in range(20)], timeout=30)
    assert len(worker_processes()) <= 2


def test_short_task_is_not_queued_behind_a_long_one(cluster, tmp_path, poll_until):
    assert actorflow.get(add.remote(1, 2), timeout=30) == 3  # add is now known to be short
    gate, started = str(tmp_path / "gate"), str(tmp_path / "started")
    long_running = gated.remote(gate, "long", started)
    try:
        poll_until(lambda: os.path.exists(started), timeout=30)
        # Three CPUs are idle: the short task must not wait for the long one.
        assert actorflow.get(add.remote(3, 4), timeout=5) == 7
    finally:
        touch(gate)
    assert actorflow.get(long_running, timeout=30) == "long"


# -- tasks submitting tasks ---------------------------------------------------------------------


def test_tasks_submit_tasks(cluster):
    assert actorflow.get(parent.remote(4), timeout=30) == 1 + 2 + 3 + 4


def test_task_can_return_refs_it_owns(cluster):
    refs = actorflow.get(parent_returning_refs.remote(3), timeout=30)
    assert all(isinstance(r, actorflow.ObjectRef) for r in refs)
    assert actorflow.get(refs, timeout=30) == [1, 2, 3]


def test_blocked_get_releases_the_cpu(make_cluster):
    # One CPU: each level waits in get() for a task that needs that CPU.
    make_cluster(num_cpus=1)
    assert actorflow.get(chain.remote(3), timeout=45) == 3
    assert actorflow.get(parent.remote(3), timeout=45) == 6


# -- retries ------------------------------------------------------------------------------------


def test_worker_death_is_retried(cluster, tmp_path):
    assert actorflow.get(crash_until.remote(str(tmp_path / "n"), 2), timeout=45) == 3


def test_default_max_retries_is_three(cluster, tmp_path):
    attempts = tmp_path / "n"
    with pytest.raises(exceptions.WorkerCrashedError):
        actorflow.get(crash_until.remote(str(attempts), 100), timeout=45)
    assert len(attempts.read_text()) == 4


def test_max_retries_zero_does_not_retry(cluster, tmp_path):
    attempts = tmp_path / "n"
    with pytest.raises(exceptions.WorkerCrashedError):
        actorflow.get(crash_until.options(max_retries=0).remote(str(attempts), 100), timeout=45)
    assert len(attempts.read_text()) == 1


def test_killed_worker_is_retried(cluster, tmp_path, poll_until):
    pid_file, attempts = tmp_path / "pid", tmp_path / "n"
    ref = wait_to_be_killed.remote(str(pid_file), str(attempts))
    poll_until(pid_file.exists, timeout=30)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert actorflow.get(ref, timeout=45) == "second attempt"
    assert len(attempts.read_text()) == 2


def test_exceptions_are_not_retried_by_default(cluster, tmp_path):
    attempts = tmp_path / "n"
    with pytest.raises(ValueError):
        actorflow.get(raise_until.remote(str(attempts), 1))
    assert len(attempts.read_text()) == 1


def test_retry_exceptions_true(cluster, tmp_path):
    ref = raise_until.options(retry_exceptions=True).remote(str(tmp_path / "n"), 2)
    assert actorflow.get(ref, timeout=30) == 3


def test_retry_exceptions_list_of_types(cluster, tmp_path):
    retrying = raise_until.options(retry_exceptions=[KeyError])
    assert actorflow.get(retrying.remote(str(tmp_path / "a"), 2, KeyError), timeout=30) == 3
    with pytest.raises(ValueError):
        actorflow.get(retrying.remote(str(tmp_path / "b"), 2, ValueError), timeout=30)
    assert len((tmp_path / "b").read_text()) == 1


def test_retry_exceptions_respects_max_retries(cluster, tmp_path):
    attempts = tmp_path / "n"
    ref = raise_until.options(retry_exceptions=True, max_retries=1).remote(str(attempts), 10)
    with pytest.raises(ValueError, match="attempt 2"):
        actorflow.get(ref, timeout=30)
    assert len(attempts.read_text()) == 2


# -- async functions ----------------------------------------------------------------------------


def test_async_remote_function_runs_on_the_worker_loop(cluster):
    value, loop_running, pid = actorflow.get(async_task.remote(21), timeout=30)
    assert (value, loop_running) == (42, True)
    assert pid != os.getpid()


# -- remote generators --------------------------------------------------------------------------


def test_generator_streams_refs(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    gen = gen_numbers.remote(4, gate)
    assert isinstance(gen, actorflow.ObjectRefGenerator)
    first = next(gen)
    # The first item is there while the generator is still blocked before its second one.
    assert actorflow.get(first, timeout=30) == 0
    assert not gen.is_finished()
    touch(gate)
    assert [actorflow.get(ref, timeout=30) for ref in gen] == [1, 2, 3]
    assert gen.is_finished()


def test_generator_next_ref_with_a_timeout(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    gen = gen_numbers.remote(2, gate)
    assert actorflow.get(gen.next_ref(timeout=30), timeout=30) == 0
    with pytest.raises(exceptions.GetTimeoutError):
        gen.next_ref(timeout=0.2)
    touch(gate)
    assert actorflow.get(gen.next_ref(timeout=30), timeout=30) == 1
    with pytest.raises(StopIteration):
        gen.next_ref(timeout=30)


def test_empty_generator(cluster):
    assert list(gen_numbers.remote(0)) == []


def test_generator_exception_is_the_next_refs_error(cluster):
    gen = gen_then_fail.remote(2)
    assert actorflow.get(next(gen)) == 0
    assert actorflow.get(next(gen)) == 1
    with pytest.raises(ValueError, match="generator failed after items") as info:
        actorflow.get(next(gen))
    assert isinstance(info.value, exceptions.TaskError)
    with pytest.raises(StopIteration):
        next(gen)


def test_retried_generator_ends_with_the_last_attempts_error(cluster, tmp_path):
    # The retry replays items 0..2, which the reader already has; the reader must then get the
    # second attempt's error, not an early end of the stream.
    attempts = str(tmp_path / "attempts")
    gen = gen_counting_then_fail.options(retry_exceptions=[ValueError], max_retries=1).remote(
        attempts, 3
    )
    assert [actorflow.get(next(gen), timeout=30) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="attempt 2") as info:
        actorflow.get(next(gen), timeout=30)
    assert isinstance(info.value, exceptions.TaskError)
    with pytest.raises(StopIteration):
        next(gen)


async def test_retried_generator_ends_with_its_error_under_async_for(cluster, tmp_path):
    attempts = str(tmp_path / "attempts")
    gen = gen_counting_then_fail.options(retry_exceptions=[ValueError], max_retries=1).remote(
        attempts, 2
    )
    refs = [ref async for ref in gen]
    assert [await ref for ref in refs[:2]] == [0, 1]
    assert len(refs) == 3
    with pytest.raises(ValueError, match="attempt 2"):
        await refs[2]


def test_generator_with_fixed_num_returns(cluster):
    refs = gen_numbers.options(num_returns=3).remote(3)
    assert actorflow.get(refs) == [0, 1, 2]


def test_get_of_a_generator_is_refused(cluster):
    with pytest.raises(TypeError, match="iterate"):
        actorflow.get(gen_numbers.remote(1))


async def test_async_generator_with_async_for(cluster):
    values = [await ref async for ref in async_gen.remote(4)]
    assert values == [0, 1, 4, 9]


async def test_sync_generator_with_async_for(cluster):
    values = [await ref async for ref in gen_numbers.remote(3)]
    assert values == [0, 1, 2]


async def test_async_generator_exception_is_the_next_refs_error(cluster):
    gen = async_gen_then_fail.remote(1)
    assert await gen.__anext__() is not None
    refs = [ref async for ref in gen]
    assert len(refs) == 1
    with pytest.raises(KeyError):
        await refs[0]


def test_async_generator_with_sync_for(cluster):
    assert [actorflow.get(r) for r in async_gen.remote(3)] == [0, 1, 4]


# -- output of workers --------------------------------------------------------------------------


def _output_contains(capfd, seen: list[str], needle: str) -> bool:
    out, err = capfd.readouterr()
    seen.append(out + err)
    return needle in "".join(seen)


def test_print_reaches_the_driver_with_a_prefix(cluster, capfd, poll_until):
    marker = f"marker-print-{os.urandom(4).hex()}"
    pid = actorflow.get(print_marker.remote(marker), timeout=30)
    seen: list[str] = []
    poll_until(
        lambda: _output_contains(capfd, seen, f"(print_marker pid={pid}) {marker}"), timeout=10
    )


def test_async_task_print_has_the_function_name(cluster, capfd, poll_until):
    marker = f"marker-async-{os.urandom(4).hex()}"
    pid = actorflow.get(async_print_marker.remote(marker), timeout=30)
    seen: list[str] = []
    poll_until(lambda: _output_contains(capfd, seen, marker), timeout=10)
    assert f"(async_print_marker pid={pid}) {marker}" in "".join(seen)


def test_logging_reaches_the_driver_with_a_prefix(cluster, capfd, poll_until):
    marker = f"marker-log-{os.urandom(4).hex()}"
    pid = actorflow.get(log_marker.remote(marker), timeout=30)
    seen: list[str] = []
    poll_until(lambda: _output_contains(capfd, seen, marker), timeout=5)
    assert f"(log_marker pid={pid})" in "".join(seen)


def test_worker_output_is_in_a_log_file_of_the_session(cluster, poll_until):
    marker = f"marker-file-{os.urandom(4).hex()}"
    actorflow.get(print_marker.remote(marker), timeout=30)
    logs = os.path.join(actorflow.api._info()["session_dir"], "logs")

    def found() -> bool:
        for path in glob.glob(os.path.join(logs, "*.log")):
            with open(path, errors="replace") as f:
                if marker in f.read():
                    return True
        return False

    poll_until(found, timeout=10)
