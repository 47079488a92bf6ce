"""Lifecycle: init, shutdown, is_initialized, auto-init, the runtime context, configuration from
the environment, and that no worker outlives its driver (shutdown, normal exit, SIGKILL)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)

SCRIPTS = Path(__file__).resolve().parent / "scripts"


@actorflow.remote
def getpid():
    return os.getpid()


@actorflow.remote
def context_in_task():
    ctx = actorflow.get_runtime_context()
    return ctx.get_task_id(), ctx.get_job_id(), ctx.namespace, ctx.get_worker_id()


@actorflow.remote
def crash_once(path: str):
    with open(path, "a") as f:
        f.write("x")
    os._exit(1)


@actorflow.remote
def wait_for_file(path: str):
    while not os.path.exists(path):
        time.sleep(0.01)


# -- init and shutdown --------------------------------------------------------------------------


def test_init_and_shutdown(make_cluster):
    info = make_cluster(num_cpus=2)
    assert actorflow.is_initialized()
    assert info["address"].startswith("tcp://127.0.0.1:")
    assert os.path.isdir(os.path.join(info["session_dir"], "logs"))
    assert os.path.isfile(os.path.join(info["session_dir"], "token"))
    assert actorflow.get(getpid.remote(), timeout=30) != os.getpid()
    actorflow.shutdown()
    assert not actorflow.is_initialized()
    actorflow.shutdown()  # a second shutdown is a no-op
    assert not actorflow.is_initialized()


def test_shutdown_without_init_is_a_no_op(no_cluster):
    assert not actorflow.is_initialized()
    actorflow.shutdown()
    assert not actorflow.is_initialized()


def test_init_twice(make_cluster):
    info = make_cluster(num_cpus=1)
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        actorflow.init(num_cpus=1)
    again = actorflow.init(num_cpus=3, ignore_reinit_error=True)
    assert again["session_dir"] == info["session_dir"]
    assert actorflow.cluster_resources()["CPU"] == 1


def test_init_arguments_are_checked(no_cluster):
    with pytest.raises(TypeError, match="bogus"):
        actorflow.init(bogus=1)
    with pytest.raises(ConnectionError):
        actorflow.init(address="ray://10.0.0.1:10001")
    assert not actorflow.is_initialized()


def test_ray_only_init_arguments_are_accepted(make_cluster):
    make_cluster(
        num_cpus=1, include_dashboard=False, logging_level="INFO", object_store_memory=10**8
    )
    assert actorflow.get(getpid.remote(), timeout=30) != os.getpid()


def test_apis_that_need_a_cluster(no_cluster):
    assert not actorflow.is_initialized()
    with pytest.raises(exceptions.RuntimeNotInitializedError):
        actorflow.cluster_resources()
    with pytest.raises(exceptions.RuntimeNotInitializedError):
        actorflow.available_resources()
    assert not actorflow.is_initialized()


def test_reinit_after_shutdown(make_cluster):
    first = make_cluster(num_cpus=1)
    first_pid = actorflow.get(getpid.remote(), timeout=30)
    actorflow.shutdown()
    second = make_cluster(num_cpus=2)
    assert second["session_dir"] != first["session_dir"]
    assert actorflow.cluster_resources()["CPU"] == 2
    assert actorflow.get(getpid.remote(), timeout=30) not in (os.getpid(), first_pid)


def test_quick_reinit_in_the_same_session_root(no_cluster, end_leftover_processes, tmp_path):
    """Several sessions within one second, in one root, get directories of their own."""
    root = str(tmp_path)
    session_dirs = []
    try:
        for _ in range(8):
            session_dirs.append(actorflow.init(num_cpus=1, _temp_dir=root)["session_dir"])
            actorflow.shutdown()
    finally:
        actorflow.shutdown()
    assert len(set(session_dirs)) == 8
    assert all(os.path.isdir(os.path.join(d, "logs")) for d in session_dirs)


def test_auto_init_on_first_use(no_cluster, poll_until):
    assert not actorflow.is_initialized()
    try:
        ref = actorflow.put("auto")
        assert actorflow.is_initialized()
        assert actorflow.get(ref) == "auto"
        info = actorflow.api._info()
        # The default session root, with per-worker log files.
        assert info["session_dir"].startswith("/tmp/actorflow-sessions/session_")
        assert actorflow.get(getpid.remote(), timeout=30) != os.getpid()
        logs = os.path.join(info["session_dir"], "logs")
        poll_until(lambda: any(name.endswith(".log") for name in os.listdir(logs)), timeout=10)
        assert actorflow.cluster_resources()["CPU"] == float(os.cpu_count() or 1)
    finally:
        actorflow.shutdown()
    assert not actorflow.is_initialized()


def test_auto_init_from_remote(no_cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("ACTORFLOW_SESSION_ROOT", str(tmp_path))
    assert not actorflow.is_initialized()
    try:
        assert actorflow.get(getpid.remote(), timeout=30) != os.getpid()
        assert actorflow.api._info()["session_dir"].startswith(str(tmp_path))
    finally:
        actorflow.shutdown()


# -- resources, namespace, runtime context ------------------------------------------------------


def test_cluster_resources(make_cluster):
    make_cluster(num_cpus=3, num_gpus=2, resources={"widget": 4, "half": 0.5})
    resources = actorflow.cluster_resources()
    assert resources.pop("memory") > 0  # every node offers a share of its RAM, as in Ray
    assert resources == {"CPU": 3.0, "GPU": 2.0, "widget": 4.0, "half": 0.5}


def test_init_rejects_cpu_in_resources(no_cluster):
    with pytest.raises(ValueError):
        actorflow.init(num_cpus=1, resources={"CPU": 2})
    assert not actorflow.is_initialized()


def test_namespace(make_cluster):
    make_cluster(num_cpus=1, namespace="team-a")
    assert actorflow.get_runtime_context().namespace == "team-a"
    assert actorflow.get_runtime_context().get_namespace() == "team-a"
    _, _, namespace_in_task, _ = actorflow.get(context_in_task.remote(), timeout=30)
    assert namespace_in_task == "team-a"


def test_default_namespace_is_anonymous(make_cluster):
    make_cluster(num_cpus=1)
    assert actorflow.get_runtime_context().namespace.startswith("anonymous")


def test_runtime_context(cluster):
    ctx = actorflow.get_runtime_context()
    assert ctx.get_task_id() is None  # the driver runs no task
    assert ctx.get_job_id() and ctx.get_node_id() and ctx.get_worker_id()
    ref = context_in_task.remote()
    task_id, job_id, _, worker_id = actorflow.get(ref, timeout=30)
    assert task_id == ref.task_id()
    assert job_id == ctx.get_job_id()
    assert worker_id != ctx.get_worker_id()
    found = ctx.get()
    assert set(found) >= {"job_id", "node_id", "worker_id", "namespace"}
    assert "task_id" not in found  # as Ray: only inside a task or call


# -- configuration ------------------------------------------------------------------------------


def test_environment_configures_the_cluster(make_cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("ACTORFLOW_DEFAULT_MAX_RETRIES", "0")
    make_cluster(num_cpus=1)
    attempts = tmp_path / "n"
    with pytest.raises(exceptions.WorkerCrashedError):
        actorflow.get(crash_once.remote(str(attempts)), timeout=30)
    assert len(attempts.read_text()) == 1


def test_bad_environment_value_fails_init(no_cluster, monkeypatch):
    monkeypatch.setenv("ACTORFLOW_DEFAULT_MAX_RETRIES", "three")
    with pytest.raises(ValueError, match="ACTORFLOW_DEFAULT_MAX_RETRIES"):
        actorflow.init(num_cpus=1)
    assert not actorflow.is_initialized()


# -- processes ----------------------------------------------------------------------------------


def test_workers_are_prestarted_up_to_num_cpus(make_cluster, poll_until, worker_processes):
    make_cluster(num_cpus=3)
    poll_until(lambda: len(worker_processes()) == 3, timeout=30)
    # They are the processes that run the tasks.
    pids = set(actorflow.get([getpid.remote() for _ in range(6)], timeout=30))
    assert pids <= worker_processes()


def test_shutdown_ends_every_process_it_started(
    make_cluster, poll_until, live_descendants, process_gone, tmp_path
):
    make_cluster(num_cpus=2)
    task_pids = set(actorflow.get([getpid.remote() for _ in range(4)], timeout=30))
    # A task still running at shutdown.
    actorflow.get(getpid.remote(), timeout=30)
    wait_for_file.remote(str(tmp_path / "never"))
    started = live_descendants()
    assert task_pids <= started
    begin = time.monotonic()
    actorflow.shutdown()
    assert time.monotonic() - begin < 20
    assert not actorflow.is_initialized()
    poll_until(lambda: all(process_gone(pid) for pid in started), timeout=10)
    assert not live_descendants()


def test_shutdown_right_after_init_leaves_nothing_behind(
    no_cluster, end_leftover_processes, poll_until, descendants, tmp_path
):
    """Shutdown while the workers are still starting: every process it started ends, and is
    reaped (no zombie children of the driver accumulate over init/shutdown cycles)."""
    before = set(descendants())
    for i in range(3):
        actorflow.init(num_cpus=2, _temp_dir=str(tmp_path / f"root{i}"))
        actorflow.shutdown()
    poll_until(
        lambda: not set(descendants()) - before,
        timeout=10,
        message="processes left behind by init() + shutdown()",
    )


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line from the driver within {timeout} s (got {line!r})")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(
                    f"the driver exited (code {proc.poll()}) before printing "
                    f"its line (got {line!r})"
                )
            line += chunk
    return line.decode()


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "exit"])
def test_workers_do_not_outlive_their_driver(how, tmp_path, poll_until, process_gone):
    mode = "exit" if how == "exit" else "wait"
    stderr = open(tmp_path / "driver.stderr", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "driver.py"), mode, "2", str(tmp_path / "root")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    started: list[int] = []
    try:
        report = json.loads(_read_line(proc, timeout=45))
        workers = report["workers"]
        # Every process the driver started: the workers, and whatever helper starts them.
        started = sorted(set(report["descendants"]) | set(workers))
        assert report["driver"] == proc.pid
        assert len(workers) == 2 and proc.pid not in workers
        assert set(workers) <= set(report["descendants"])
        if how == "exit":
            assert proc.wait(timeout=30) == 0
        else:
            assert not any(process_gone(pid) for pid in started)  # the driver is still up
            proc.send_signal(getattr(signal, how))
            proc.wait(timeout=30)
        poll_until(
            lambda: all(process_gone(pid) for pid in started),
            timeout=10,
            message=f"processes {started} still run after the driver ended ({how})",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        _kill_all(pid for pid in started if not process_gone(pid))
        stderr.close()
    if how == "exit":
        errors = (tmp_path / "driver.stderr").read_text(errors="replace")
        assert "Traceback" not in errors, errors
