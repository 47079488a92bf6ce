"""actorflow.util.joblib: joblib's Parallel on actorflow's Pool, as "actorflow" and as "ray"."""

from __future__ import annotations

import os

import pytest

joblib = pytest.importorskip("joblib")

from actorflow.util.joblib import register_actorflow, register_ray  # noqa: E402

pytestmark = pytest.mark.timeout(90)


def square(x):
    return x * x


def fail_on(x):
    if x == 3:
        raise KeyError(f"no item {x}")
    return x


@pytest.fixture(autouse=True)
def registered(cluster):
    register_actorflow()
    register_ray()


@pytest.mark.parametrize("name", ["actorflow", "ray"])
def test_parallel_runs_on_the_pool_under_both_names(name):
    with joblib.parallel_backend(name, n_jobs=2):
        results = joblib.Parallel()(joblib.delayed(square)(i) for i in range(20))
        pids = joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(8))
    assert results == [i * i for i in range(20)]
    assert os.getpid() not in pids  # ran in the pool's processes, not here


def test_an_exception_propagates_with_its_type():
    with joblib.parallel_backend("actorflow"):
        with pytest.raises(KeyError, match="no item 3"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(fail_on)(i) for i in range(6))


def test_n_jobs_minus_one_is_every_cpu_of_the_cluster():
    with joblib.parallel_backend("ray"):
        assert joblib.effective_n_jobs(-1) == 4  # the shared cluster's CPUs
        assert joblib.effective_n_jobs(-2) == 3
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(square)(i) for i in range(5)) == [
            0,
            1,
            4,
            9,
            16,
        ]


def test_one_job_runs_here_and_results_can_be_a_generator():
    with joblib.parallel_backend("actorflow"):
        assert (
            joblib.Parallel(n_jobs=1)(joblib.delayed(os.getpid)() for _ in range(2))
            == [os.getpid()] * 2
        )
        gen = joblib.Parallel(n_jobs=2, return_as="generator")(
            joblib.delayed(square)(i) for i in range(6)
        )
        assert list(gen) == [i * i for i in range(6)]


def test_ray_remote_args_configure_the_pools_actors():
    with joblib.parallel_backend("actorflow", ray_remote_args={"num_cpus": 1}):
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(4)) == [
            0,
            1,
            4,
            9,
        ]
    with joblib.parallel_backend("actorflow", ray_remote_args={"num_cpus": -1}):
        with pytest.raises(ValueError, match="num_cpus"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(2))
