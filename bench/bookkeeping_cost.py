"""The driver's CPU per call with a piece of bookkeeping on and off (tasks and actor calls).

    python -m bench.bookkeeping_cost [--toggle events|lineage] [--alternations 3]
        [--batches 30] [--sync-batches 4] [--only tasks_async,actor_async,...]

What is toggled (in the child's environment): ``events`` is ``ACTORFLOW_TASK_EVENTS_ENABLED``
(task events, issue 16), ``lineage`` is ``ACTORFLOW_LINEAGE_PINNING_ENABLED`` (the specs kept
to re-create lost results). Each alternation starts two fresh interpreters, one with it off
and one with it on (which goes first alternates too), each on an embedded cluster
(``init(num_cpus=2)``) that measures ``time.process_time()`` of the whole driver process (its
user thread and its runtime loop, which under init() also hosts the GCS and the raylet) over
batches of calls, after a warm-up:

  tasks_async    1,000 f.remote() then one get() of the list      (per task)
  actor_async    1,000 a.m.remote() then one get() of the list    (per call)
  tasks_sync     get(f.remote()), 1,000 one at a time             (per task)
  actor_sync     get(a.m.remote()), 1,000 one at a time           (per call)

``--interleave`` measures in one interpreter instead, switching the bookkeeping on and off
between batches (on the running core worker: new calls record events, or keep lineage, or
not), so that both settings see the same process, heap and load; what it cannot show is the
cost of state both share (the GCS's table of events under init()), which the fresh
interpreters do.

CPU time, not wall time, since the machine is shared: other processes slow the calls down but
hardly change what the driver spends on each. Prints, per workload, the median over the
alternations of each child's median (microseconds per call), their ratio and the spread;
writes bench/results/bookkeeping_cost-<timestamp>.json (and -latest.json) with every sample
and the load average before and after each child.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.child import report, run_child

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BATCH = 1000
TOGGLES = {
    "events": "ACTORFLOW_TASK_EVENTS_ENABLED",
    "lineage": "ACTORFLOW_LINEAGE_PINNING_ENABLED",
}
WORKLOADS = ("tasks_async", "actor_async", "tasks_sync", "actor_sync")
PIPELINED = {"tasks_async", "actor_async"}


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _cpu_per_call(fn: Callable[[], Any], batches: int) -> list[float]:
    """Microseconds of this process's CPU per call, one figure per batch of BATCH calls."""
    samples = []
    for _ in range(batches):
        start = time.process_time()
        fn()
        samples.append((time.process_time() - start) / BATCH * 1e6)
    return samples


def _switch(toggle: str) -> Callable[[bool], None]:
    """Turns the bookkeeping on or off for the calls made from now on, in this process."""
    from actorflow._private.worker import context

    core = context.core_or_none()
    if toggle == "lineage":
        lineage = core.ownership.lineage

        def switch(on: bool) -> None:
            lineage.enabled = on

        return switch
    submission = core.submit_task.__self__  # Submission: stamps a call's events flag

    def switch_events(on: bool) -> None:
        submission._events_enabled = on

    return switch_events


def run_workloads(
    names: list[str], batches: int, sync_batches: int, interleave: str = ""
) -> dict[str, Any]:
    import actorflow

    actorflow.init(num_cpus=2)
    try:

        @actorflow.remote
        def f() -> int:
            return 1

        @actorflow.remote
        class Actor:
            def m(self) -> int:
                return 1

        actor = Actor.remote()
        actorflow.get(actor.m.remote())

        def one_by_one(call: Callable[[], Any]) -> Callable[[], None]:
            def run() -> None:
                for _ in range(BATCH):
                    actorflow.get(call())

            return run

        fns: dict[str, Callable[[], Any]] = {
            "tasks_async": lambda: actorflow.get([f.remote() for _ in range(BATCH)]),
            "actor_async": lambda: actorflow.get([actor.m.remote() for _ in range(BATCH)]),
            "tasks_sync": one_by_one(f.remote),
            "actor_sync": one_by_one(actor.m.remote),
        }
        switch = _switch(interleave) if interleave else None
        figures: dict[str, Any] = {}
        for name in names:
            fn = fns[name]
            for _ in range(3):  # warm: leases, pipelining (it needs a run time), connections
                fn()
            count = batches if name in PIPELINED else sync_batches
            if switch is None:
                figures[name] = _cpu_per_call(fn, count)
                continue
            samples: dict[str, list[float]] = {"off": [], "on": []}
            for i in range(count):
                for on in (False, True) if i % 2 == 0 else (True, False):
                    switch(on)
                    samples["on" if on else "off"] += _cpu_per_call(fn, 1)
            switch(True)
            figures[name] = samples
        return figures
    finally:
        actorflow.shutdown()


def _child(toggle: str, on: bool, args: argparse.Namespace) -> dict[str, Any]:
    variable = TOGGLES[toggle]
    old = os.environ.get(variable)
    os.environ[variable] = "1" if on else "0"
    try:
        before = _loadavg()
        figures = run_child(
            sys.executable, "bench.bookkeeping_cost", _child_args(args), timeout=900
        )
        return {"on": on, "loadavg_before": before, "loadavg_after": _loadavg(), "us": figures}
    finally:
        if old is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = old


def _child_args(args: argparse.Namespace) -> list[str]:
    return [
        "--child",
        "--only",
        ",".join(args.only),
        "--batches",
        str(args.batches),
        "--sync-batches",
        str(args.sync_batches),
    ]


def interleaved(args: argparse.Namespace) -> None:
    """--interleave: one interpreter per alternation, switching between batches."""
    print(f"interleaving {args.toggle} on/off per batch; load average before: {_loadavg()}")
    children = []
    for _ in range(args.alternations):
        before = _loadavg()
        figures = run_child(
            sys.executable,
            "bench.bookkeeping_cost",
            [*_child_args(args), "--child-interleave", args.toggle],
            timeout=900,
        )
        children.append({"loadavg_before": before, "loadavg_after": _loadavg(), "us": figures})
        medians = ", ".join(
            f"{name} {statistics.median(figures[name]['off']):.1f}/"
            f"{statistics.median(figures[name]['on']):.1f}"
            for name in args.only
        )
        print(f"  off/on: {medians} us/call (load {before} -> {_loadavg()})", flush=True)
    rows = []
    print(f"driver CPU per call (us), medians over {args.alternations} interpreter(s):")
    print(f"{'workload':<12} {'off':>7} {'on':>7} {'on/off':>7}  off runs / on runs")
    for name in args.only:
        off = [statistics.median(c["us"][name]["off"]) for c in children]
        on = [statistics.median(c["us"][name]["on"]) for c in children]
        rows.append(_row(name, off, on))
    _write(args, rows, children, "interleaved")


def _row(name: str, off: list[float], on: list[float]) -> dict[str, Any]:
    off_m, on_m = statistics.median(off), statistics.median(on)
    runs = f"{' / '.join(f'{x:.1f}' for x in off)}  |  {' / '.join(f'{x:.1f}' for x in on)}"
    print(f"{name:<12} {off_m:>7.1f} {on_m:>7.1f} {on_m / off_m:>7.3f}  {runs}")
    return {"workload": name, "off": off_m, "on": on_m, "ratio": on_m / off_m}


def _write(args: argparse.Namespace, rows: list, children: list, mode: str) -> None:
    results = {
        "toggle": TOGGLES[args.toggle],
        "mode": mode,
        "batch": BATCH,
        "batches": args.batches,
        "sync_batches": args.sync_batches,
        "rows": rows,
        "children": children,
        "loadavg_after": _loadavg(),
    }
    print(f"load average after: {results['loadavg_after']}")
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"bookkeeping_cost-{args.toggle}-{mode}-{stamp}.json"
    for path in (name, "bookkeeping_cost-latest.json"):
        with open(os.path.join(RESULTS, path), "w") as f:
            json.dump(results, f, indent=2)
    print(f"written: {os.path.join(RESULTS, name)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toggle", choices=sorted(TOGGLES), default="events")
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30, help="pipelined batches per child")
    parser.add_argument("--sync-batches", type=int, default=4, help="sync batches per child")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="switch on and off between batches in one interpreter (per alternation)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-interleave", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.only = [w for w in args.only.split(",") if w]
    unknown = [w for w in args.only if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    if args.alternations < 1 or args.batches < 1 or args.sync_batches < 1:
        parser.error("--alternations, --batches and --sync-batches must be at least 1")
    if args.child:
        report(run_workloads(args.only, args.batches, args.sync_batches, args.child_interleave))
        return
    if args.interleave:
        interleaved(args)
        return

    variable = TOGGLES[args.toggle]
    print(f"toggling {variable}; load average before: {_loadavg()}")
    children: list[dict[str, Any]] = []
    for i in range(args.alternations):
        for on in (False, True) if i % 2 == 0 else (True, False):
            child = _child(args.toggle, on, args)
            children.append(child)
            medians = ", ".join(
                f"{name} {statistics.median(child['us'][name]):.1f}" for name in args.only
            )
            print(
                f"  {'on ' if on else 'off'}: {medians} us/call "
                f"(load {child['loadavg_before']} -> {child['loadavg_after']})",
                flush=True,
            )
    rows = []
    print(f"driver CPU per call (us), medians over {args.alternations} alternation(s):")
    print(f"{'workload':<12} {'off':>7} {'on':>7} {'on/off':>7}  off runs / on runs")
    for name in args.only:
        off = [statistics.median(c["us"][name]) for c in children if not c["on"]]
        on = [statistics.median(c["us"][name]) for c in children if c["on"]]
        rows.append(_row(name, off, on))
    _write(args, rows, children, "fresh")


if __name__ == "__main__":
    main()
