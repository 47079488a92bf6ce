"""Open files: every actorflow process raises its soft limit to the hard one, and running out
of fds while mapping objects says so (instead of a bare EMFILE)."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)


def _run(script: str, soft: int | None = None) -> subprocess.CompletedProcess:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def lower_soft_limit() -> None:
        if soft is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=100,
        preexec_fn=lower_soft_limit,
    )


def test_driver_and_workers_raise_the_soft_limit_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard open-file limit ({hard}) leaves nothing to raise")
    done = _run(
        """
        import resource
        import actorflow

        @actorflow.remote
        def worker_limit():
            return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

        actorflow.init(num_cpus=1)
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], actorflow.get(worker_limit.remote()))
        actorflow.shutdown()
        """,
        soft=256,
    )
    assert done.returncode == 0, done.stderr
    driver, worker = map(int, done.stdout.split())
    assert driver == hard and worker == hard


@pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="from Python 3.13 a mapped object keeps no fd open"
)
def test_running_out_of_fds_while_mapping_objects_names_the_limit() -> None:
    done = _run(
        """
        import os, resource
        import numpy as np
        import actorflow

        actorflow.init(num_cpus=1)
        refs = [actorflow.put(np.full(15_000, i, dtype=np.int64)) for i in range(100)]
        in_use = len(os.listdir("/proc/self/fd"))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 40, hard))
        try:
            actorflow.get(refs)  # each object held mapped keeps an fd: 100 > 40
        except OSError as exc:
            print("ERROR", exc)
        else:
            print("NO ERROR")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        actorflow.shutdown()
        """
    )
    assert done.returncode == 0, done.stderr
    assert "ERROR" in done.stdout and "NO ERROR" not in done.stdout, done.stdout
    assert "too many open files" in done.stdout and "ulimit -n" in done.stdout, done.stdout
