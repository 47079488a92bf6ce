"""Shared fixtures for the actorflow core tests.

- ``cluster``: the shared local cluster (``num_cpus=4``), started on first use and kept for the
  whole session. A test that needs its own ``init`` arguments uses ``make_cluster(...)`` instead;
  that shuts the shared cluster down, and the next test that asks for ``cluster`` starts a fresh
  one.
- ``poll_until(predicate, timeout)`` / ``apoll_until``: wait for a condition, never a bare sleep.
- A per-test check that no test leaves a cluster of its own initialised, and a session-end check
  that no child process of the pytest process is left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import poll_until, process_gone

import actorflow

HERE = Path(__file__).resolve().parent
SHARED_CLUSTER_ARGS: dict[str, Any] = {"num_cpus": 4}


# -- waiting ------------------------------------------------------------------------------------


async def apoll_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> Any:
    """poll_until for async tests: yields to the event loop between checks."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"condition not met within {timeout} s" + (f": {message}" if message else "")
            )
        await asyncio.sleep(interval)


@pytest.fixture(name="poll_until")
def poll_until_fixture() -> Callable[..., Any]:
    return poll_until


@pytest.fixture(name="apoll_until")
def apoll_until_fixture() -> Callable[..., Any]:
    return apoll_until


# -- processes ----------------------------------------------------------------------------------


def _process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state letter)} of every process we can see."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            table[int(entry)] = (int(fields["PPid"].strip()), fields["State"].strip().split()[0])
        except (KeyError, ValueError):
            continue
    return table


def child_processes(parent: int | None = None) -> dict[int, str]:
    """{pid: state letter} of the processes whose parent is `parent` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    return {pid: state for pid, (ppid, state) in _process_table().items() if ppid == parent}


def descendants(root: int | None = None) -> dict[int, str]:
    """{pid: state letter} of every process below root (default: this process), at any depth:
    workers may be children of the driver or of a process it started (a fork server)."""
    root = os.getpid() if root is None else root
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    stack = [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            if pid not in found:
                found[pid] = table[pid][1]
                stack.append(pid)
    return found


def live_descendants() -> set[int]:
    """Pids of the processes below this one that still run (a cluster's worker processes and
    whatever helper processes it started)."""
    return {pid for pid, state in descendants().items() if state not in ("Z", "X")}


def worker_processes() -> set[int]:
    """The leaves among live_descendants(): the processes that run tasks (a helper that starts
    workers, like a fork server, has children and is left out)."""
    live = live_descendants()
    table = _process_table()
    parents = {table[pid][0] for pid in live if pid in table}
    return {pid for pid in live if pid not in parents}


def _started_for_this_driver() -> dict[int, str]:
    """Live processes, anywhere, whose environment says they were started for this process's
    clusters (workers inherit ACTORFLOW_PARENT_PID): catches workers orphaned by their parent."""
    marker = f"ACTORFLOW_PARENT_PID={os.getpid()}".encode()
    found = {}
    for pid, (_, state) in _process_table().items():
        if pid == os.getpid() or state in ("Z", "X"):
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found[pid] = state
        except OSError:
            continue
    return found


@pytest.fixture(name="descendants")
def descendants_fixture() -> Callable[..., dict[int, str]]:
    return descendants


@pytest.fixture(name="child_processes")
def child_processes_fixture() -> Callable[[], dict[int, str]]:
    return child_processes


@pytest.fixture
def end_leftover_processes() -> Iterator[None]:
    """For tests that knowingly make the framework leave processes behind: after the test, end
    and reap whatever it left, so that the session's leak check stays about other tests."""
    before = set(descendants())
    yield
    for pid in set(descendants()) - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in set(child_processes()) - before:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


@pytest.fixture(name="live_descendants")
def live_descendants_fixture() -> Callable[[], set[int]]:
    return live_descendants


@pytest.fixture(name="worker_processes")
def worker_processes_fixture() -> Callable[[], set[int]]:
    return worker_processes


@pytest.fixture(name="process_gone")
def process_gone_fixture() -> Callable[[int], bool]:
    return process_gone


# -- clusters -----------------------------------------------------------------------------------


class _Shared:
    info: dict[str, Any] | None = None
    # A test failed (or xfailed) since the shared cluster started: it may have left tasks stuck
    # or resources held, so the next test that wants the shared cluster gets a fresh one.
    dirty = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    report = yield
    if report.failed or hasattr(report, "wasxfail"):
        _Shared.dirty = True
    return report


def _live_session_dir() -> str | None:
    if not actorflow.is_initialized():
        return None
    return actorflow.api._info().get("session_dir")


def _is_shared_live() -> bool:
    return _Shared.info is not None and _live_session_dir() == _Shared.info["session_dir"]


def _session_root(factory: pytest.TempPathFactory) -> str:
    # Each init gets its own session root under pytest's tmp dir, so sessions of the suite do not
    # pile up in the default root.
    return str(factory.mktemp("afsession"))


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shared cluster (num_cpus=4); its init() info dict."""
    if not _is_shared_live() or _Shared.dirty:
        _settle_and_shutdown()
        _Shared.dirty = False
        _Shared.info = actorflow.init(
            **SHARED_CLUSTER_ARGS, _temp_dir=_session_root(tmp_path_factory)
        )
    assert _Shared.info is not None
    return _Shared.info


@actorflow.remote(num_cpus=0)
def _noop() -> None:
    return None


def _settle_and_shutdown() -> None:
    """Shut down the live cluster once it has finished starting: a test that is not about
    shutting down mid-start should not trip over it (test_lifecycle.py covers that case)."""
    if not actorflow.is_initialized():
        return
    try:
        actorflow.get(_noop.remote(), timeout=10)
    except Exception:
        pass  # a broken cluster still gets shut down
    actorflow.shutdown()


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., dict]]:
    """make_cluster(**init_kwargs): a cluster of this test's own, shut down after the test."""

    def start(**kwargs: Any) -> dict[str, Any]:
        _settle_and_shutdown()
        _Shared.info = None
        kwargs.setdefault("_temp_dir", _session_root(tmp_path_factory))
        return actorflow.init(**kwargs)

    yield start
    if not _is_shared_live():
        _settle_and_shutdown()


@pytest.fixture
def no_cluster() -> Iterator[None]:
    """The test starts with no cluster initialised (the shared one is shut down) and whatever it
    starts is shut down after it."""
    _settle_and_shutdown()
    _Shared.info = None
    yield
    _settle_and_shutdown()


@pytest.fixture(autouse=True)
def _no_stray_cluster() -> Iterator[None]:
    """After each test, no cluster other than the shared one may be left initialised."""
    yield
    if actorflow.is_initialized() and not _is_shared_live():
        _settle_and_shutdown()
        pytest.fail("the test left a cluster of its own initialised (use make_cluster)")


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """At the end of the session no child process of pytest may remain (running or unreaped),
    and no process started for its clusters may run anywhere."""
    yield
    _settle_and_shutdown()

    def leaked() -> dict[int, str]:
        return {**child_processes(), **_started_for_this_driver()}

    try:
        poll_until(lambda: not leaked(), timeout=15)
    except AssertionError:
        details = []
        for pid, state in sorted(leaked().items()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = "?"
            details.append(f"pid {pid} state {state}: {cmd}")
        pytest.fail("processes leaked by the test session:\n" + "\n".join(details))


@pytest.fixture
def local_cluster(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A LocalCluster of node processes (add_node() them; the first is the head), in a session
    root of this test's own (ACTORFLOW_SESSION_ROOT points there meanwhile, so drivers find its
    token). The embedded shared cluster is shut down first; a driver this test connects with
    init(address=...) is disconnected, and every node ended by pid, after it."""
    from actorflow.util.local_cluster import LocalCluster

    _settle_and_shutdown()
    _Shared.info = None
    root = _session_root(tmp_path_factory)
    monkeypatch.setenv("ACTORFLOW_SESSION_ROOT", root)
    cluster = LocalCluster(session_root=root)
    try:
        yield cluster
    finally:
        if actorflow.is_initialized():
            actorflow.shutdown()
        cluster.shutdown()


@pytest.fixture
def cli(tmp_path: Any) -> Iterator[Any]:
    """The real `actorflow` CLI run as subprocesses in a session root of this test's own
    (test_cli_cluster.CliCluster); every process it started is ended by pid afterwards."""
    from test_cli_cluster import CliCluster

    cluster = CliCluster(tmp_path / "sessions")
    try:
        yield cluster
    finally:
        cluster.cleanup()
