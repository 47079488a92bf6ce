"""CPU time per async-actor call, per process: ``python -m bench.async_cpu_per_call [--seconds S]``.

As bench/cpu_per_call.py, for an actor whose methods are ``async def``: ``get(a.m.remote())``
one at a time ("sync"), and batches of 1,000 calls then ``get`` of the list ("batched"). Each
process's CPU time (user + system, from /proc) is divided by the number of calls: on a shared
machine this says what a call costs better than its rate does. Prints; writes JSON with
``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.cpu_per_call import _cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()

    import actorflow

    actorflow.init(num_cpus=2)

    @actorflow.remote
    class AsyncActor:
        async def m(self) -> int:
            return 1

        async def pid(self) -> int:
            return os.getpid()

    actor = AsyncActor.remote()
    worker = actorflow.get(actor.pid.remote())
    batch = 1000
    modes = {
        "sync": (1, lambda: actorflow.get(actor.m.remote())),
        "batched": (batch, lambda: actorflow.get([actor.m.remote() for _ in range(batch)])),
    }
    figures = {}
    for name, (per_round, run) in modes.items():
        for _ in range(max(2, 300 // per_round)):  # warm: connections, code paths
            run()
        me0, worker0, start = _cpu_seconds(os.getpid()), _cpu_seconds(worker), time.perf_counter()
        n = 0
        while time.perf_counter() - start < args.seconds:
            run()
            n += per_round
        elapsed = time.perf_counter() - start
        caller_us = (_cpu_seconds(os.getpid()) - me0) / n * 1e6
        worker_us = (_cpu_seconds(worker) - worker0) / n * 1e6
        figures[name] = {"rate": n / elapsed, "caller_us": caller_us, "worker_us": worker_us}
        print(
            f"async actor {name}: {n / elapsed:,.0f}/s; CPU per call: caller {caller_us:.1f} us, "
            f"worker {worker_us:.1f} us; load {open('/proc/loadavg').read().split()[0]}"
        )
    actorflow.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
