"""CPU time per sync call, per process: ``python -m bench.cpu_per_call [--seconds S]``.

Runs ``get(actor.m.remote())`` and then ``get(f.remote())`` one at a time on an embedded
actorflow cluster and divides each process's CPU time (user + system, from /proc) by the number
of calls. Every step of a sync call is serial, so the caller's and the worker's CPU per call add
up to about the wall time per call: this says which side to cut. Prints; writes no JSON (the
rates themselves are measured by ``python -m bench``).
"""

from __future__ import annotations

import argparse
import os
import time


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    import actorflow

    actorflow.init(num_cpus=2)

    @actorflow.remote
    class Actor:
        def m(self) -> int:
            return 1

        def pid(self) -> int:
            return os.getpid()

    @actorflow.remote
    def f() -> int:
        return os.getpid()

    actor = Actor.remote()
    calls = {
        "actor call": lambda: actorflow.get(actor.m.remote()),
        "task": lambda: actorflow.get(f.remote()),
    }
    worker_pid = {
        "actor call": actorflow.get(actor.pid.remote()),
        "task": actorflow.get(f.remote()),
    }
    for name, call in calls.items():
        for _ in range(300):  # warm: leases, function export, connections
            call()
        pid = worker_pid[name] if name == "actor call" else actorflow.get(f.remote())
        me0, worker0, start = _cpu_seconds(os.getpid()), _cpu_seconds(pid), time.perf_counter()
        n = 0
        while time.perf_counter() - start < args.seconds:
            call()
            n += 1
        elapsed = time.perf_counter() - start
        print(
            f"{name}: {n / elapsed:,.0f}/s, {elapsed / n * 1e6:.0f} us per call; CPU per call: "
            f"caller {(_cpu_seconds(os.getpid()) - me0) / n * 1e6:.0f} us, worker "
            f"{(_cpu_seconds(pid) - worker0) / n * 1e6:.0f} us (a task may land on another "
            f"worker: then the worker figure is low)"
        )
    actorflow.shutdown()


if __name__ == "__main__":
    main()
