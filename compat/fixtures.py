"""A pytest plugin (``-p compat.fixtures``) with the fixtures Ray's test files ask Ray's conftest
for, written on the public API so they work the same under real Ray and under the alias.

As Ray's conftest does, a fixture starts a local cluster with 1 CPU unless the test passes other
``ray.init`` arguments through ``request.param`` (indirect parametrization), and shuts it down
after. ``_system_config`` is dropped on both runtimes: Ray aborts on keys it no longer knows, and
actorflow has no such table (its tunables live in its Config).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import ray

DEFAULTS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 150 * 1024 * 1024}
# ray.init / add_node arguments dropped on both runtimes (see the module docstring).
DROPPED = ("_system_config",)


def is_alias() -> bool:
    """True when ``ray`` is actorflow through compat/ray_alias."""
    return ray.__name__ == "actorflow"


# Helpers older Ray test files import from ray._private.test_utils or ray.tests.*, which
# Ray 2.60 has moved to ray._common.test_utils or does not ship in its wheel.
HELPER_NAMES = (
    "SignalActor",
    "Semaphore",
    "wait_for_condition",
    "async_wait_for_condition",
    "run_string_as_driver",
    "run_string_as_driver_nonblocking",
    "wait_for_pid_to_exit",
    "kill_actor_and_wait_for_failure",
    "BatchQueue",
    "client_test_enabled",
    "create_remote_signal_actor",
)


def _restore_moved_ray_helpers() -> None:
    """Under real Ray: make the test-helper imports of older test files resolve, to Ray's own
    helper where it moved (ray._common.test_utils), else to compat.test_utils. Only helper
    locations change; Ray's runtime is untouched."""
    import importlib
    import sys
    import types

    from compat import test_utils as ours

    private = importlib.import_module("ray._private.test_utils")
    try:
        common: Any = importlib.import_module("ray._common.test_utils")
    except ImportError:
        common = None
    for name in HELPER_NAMES:
        if not hasattr(private, name):
            setattr(private, name, getattr(common, name, None) or getattr(ours, name))
    try:
        importlib.import_module("ray.tests")
    except ImportError:  # the wheel ships no ray.tests: stand in with the harness's modules
        package = types.ModuleType("ray.tests")
        package.__path__ = []
        sys.modules["ray.tests"] = package
        sys.modules["ray.tests.client_test_utils"] = ours
        sys.modules["ray.tests.conftest"] = sys.modules[__name__]
        ray.tests = package  # type: ignore[attr-defined]


if not is_alias():
    _restore_moved_ray_helpers()


def init_kwargs(request: pytest.FixtureRequest | None, **defaults: Any) -> dict[str, Any]:
    """The ray.init arguments for a fixture: the defaults, overridden by ``request.param``."""
    params = dict(getattr(request, "param", None) or {})
    kwargs = {**DEFAULTS, **defaults, **params}
    for key in DROPPED:
        kwargs.pop(key, None)
    return kwargs


def _start(request: pytest.FixtureRequest | None, **defaults: Any) -> Iterator[Any]:
    info = ray.init(**init_kwargs(request, **defaults))
    try:
        yield info
    finally:
        ray.shutdown()


@pytest.fixture
def shutdown_only() -> Iterator[None]:
    yield None
    ray.shutdown()


@pytest.fixture
def ray_start_regular(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _start(request)


@pytest.fixture(scope="module")
def ray_start_regular_shared(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _start(request)


@pytest.fixture(scope="module", params=[{"local_mode": False}])
def ray_start_shared_local_modes(request: pytest.FixtureRequest) -> Iterator[Any]:
    # Ray's version runs each test in local mode too; local mode is deprecated in Ray and absent
    # from actorflow, so only the normal mode runs here.
    kwargs = init_kwargs(request)
    kwargs.pop("local_mode", None)
    info = ray.init(**kwargs)
    try:
        yield info
    finally:
        ray.shutdown()


@pytest.fixture
def ray_start_2_cpus(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _start(request, num_cpus=2)


@pytest.fixture
def ray_start_10_cpus(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _start(request, num_cpus=10)


@pytest.fixture(scope="module")
def ray_start_10_cpus_shared(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _start(request, num_cpus=10)


def _make_cluster(**kwargs: Any) -> Any:
    if is_alias():
        from compat.cluster_utils import Cluster as AliasCluster

        return AliasCluster(**kwargs)
    from ray.cluster_utils import Cluster

    return Cluster(**kwargs)


@pytest.fixture
def ray_start_cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A cluster object; with ``num_nodes`` in the params (as Ray's conftest), that many nodes
    of the given resources are started and the test is connected to the first."""
    params = init_kwargs(request)
    num_nodes = params.pop("num_nodes", 0)
    namespace = params.pop("namespace", None)
    cluster = _make_cluster()
    try:
        for i in range(num_nodes):
            cluster.add_node(**params)
            if i == 0:
                ray.init(address=cluster.address, namespace=namespace)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def ray_start_cluster_head(request: pytest.FixtureRequest) -> Iterator[Any]:
    params = dict(getattr(request, "param", None) or {})
    for key in DROPPED:
        params.pop(key, None)
    params.setdefault("num_cpus", 1)
    cluster = _make_cluster(initialize_head=True, connect=True, head_node_args=params)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def enable_pickle_debug() -> Iterator[None]:
    os.environ["RAY_PICKLE_VERBOSE_DEBUG"] = "1"
    yield None
    os.environ.pop("RAY_PICKLE_VERBOSE_DEBUG", None)


@pytest.fixture
def event_loop() -> Iterator[Any]:
    """The event_loop fixture older pytest-asyncio versions gave (test files still ask for it)."""
    import asyncio

    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
