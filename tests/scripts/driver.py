"""A driver process for test_lifecycle.py.

    python driver.py MODE NUM_CPUS SESSION_ROOT

Starts a local cluster, runs NUM_CPUS tasks at the same time (so that every pre-started worker
runs one), and prints one JSON line:

    {"driver": pid, "workers": [pid, ...], "descendants": [pid, ...]}

where the worker pids come from os.getpid() inside the tasks and the descendants are every process
below the driver (workers and any helper process that starts them). Then:

- MODE "wait": blocks until killed (reads stdin, which the test never writes to);
- MODE "exit": returns normally without calling shutdown() (atexit must clean up).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

import actorflow


@actorflow.remote
def worker_pid(directory: str, parties: int) -> int:
    with open(os.path.join(directory, f"arrived-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    deadline = time.monotonic() + 30
    while len(glob.glob(os.path.join(directory, "arrived-*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("the tasks did not run at the same time")
        time.sleep(0.005)
    return os.getpid()


def descendants() -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, stack = [], [os.getpid()]
    while stack:
        parent = stack.pop()
        for pid, ppid in parents.items():
            if ppid == parent:
                found.append(pid)
                stack.append(pid)
    return sorted(found)


def main() -> None:
    mode, num_cpus, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    actorflow.init(num_cpus=num_cpus, _temp_dir=root)
    barrier_dir = os.path.join(root, "barrier")
    os.makedirs(barrier_dir, exist_ok=True)
    pids = actorflow.get(
        [worker_pid.remote(barrier_dir, num_cpus) for _ in range(num_cpus)], timeout=45
    )
    report = {"driver": os.getpid(), "workers": sorted(set(pids)), "descendants": descendants()}
    print(json.dumps(report), flush=True)
    if mode == "wait":
        sys.stdin.read()
    elif mode != "exit":
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
