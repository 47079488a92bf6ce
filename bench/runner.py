"""One framework's side of a benchmark run, always in its own process.

    python -m bench.runner --framework ray|actorflow --workloads KEY[,KEY...] --json-out FILE
    python -m bench.runner --framework ... --probe init|rss      # one JSON line on stdout

The API module is imported by name (``--module``, default = framework name).  If the
import or ``init()`` fails, every requested workload is recorded as ``n/a: <reason>``;
a workload that raises is recorded as ``n/a`` and the next one runs.  The JSON file is
rewritten after each workload so a killed runner still leaves its finished results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback

from .procinfo import cpu_snapshot, foreign_cpu


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {msg[0] if msg else ''}".rstrip(": ")
    return text[:240]


def _import_api(module: str):
    try:
        api = importlib.import_module(module)
    except BaseException as e:
        raise RuntimeError(f"import {module} failed: {_reason(e)}") from e
    missing = [
        n for n in ("init", "remote", "get", "put", "wait", "shutdown") if not hasattr(api, n)
    ]
    if missing:
        raise RuntimeError(f"{module} has no {', '.join(missing)} yet (framework not ready)")
    return api


def _version(api) -> str:
    return str(getattr(api, "__version__", "?"))


def _process_age() -> float | None:
    """Seconds since this process was started (fork/exec), from /proc."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 overall: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# --------------------------------------------------------------------------------------
# probes (fresh process each): init-to-first-result and idle RSS
# --------------------------------------------------------------------------------------


def _probe(args) -> dict:
    age0 = _process_age()  # process age when this code runs (interpreter + bench import)
    t0 = time.perf_counter()
    api = _import_api(args.module)
    t1 = time.perf_counter()
    api.init()
    t2 = time.perf_counter()

    def one():
        return 1

    f = api.remote(one)
    assert api.get(f.remote()) == 1
    t3 = time.perf_counter()
    out = {
        "import_s": t1 - t0,
        "init_s": t2 - t1,
        "init_to_result_s": t3 - t1,
        # process start (exec) -> first result, includes interpreter start-up and import
        "process_to_result_s": (age0 + (t3 - t0)) if age0 is not None else None,
        "version": _version(api),
    }
    if args.probe == "rss":
        from .procinfo import tree_memory

        time.sleep(args.settle)
        snaps = []
        for _ in range(3):
            snaps.append(tree_memory())
            time.sleep(0.5)
        mid = sorted(snaps, key=lambda s: s["rss_mb"])[1]
        out.update(
            rss_mb_samples=[s["rss_mb"] for s in snaps],
            pss_mb=mid["pss_mb"],
            driver_rss_mb=mid["driver_rss_mb"],
            nprocs=mid["nprocs"],
            procs=[
                {k: (round(v, 1) if isinstance(v, float) else v) for k, v in p.items()}
                for p in mid["procs"]
            ],
        )
    t4 = time.perf_counter()
    api.shutdown()
    out["shutdown_s"] = time.perf_counter() - t4
    return out


# --------------------------------------------------------------------------------------
# workload batch
# --------------------------------------------------------------------------------------


def _na(reason: str) -> dict:
    return {"status": "n/a", "reason": reason}


def run_batch(args) -> dict:
    from .workloads import BY_KEY, Config, build

    cfg = Config(
        warmup=args.warmup,
        rounds=args.rounds,
        duration=args.duration,
        reps=args.reps,
        settle=args.settle,
        framework=args.framework,
        module=args.module,
    )
    keys = [k for k in args.workloads.split(",") if k]
    doc = {
        "framework": args.framework,
        "module": args.module,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "pid": os.getpid(),
        "config": vars(cfg),
        "results": {},
        "error": None,
    }

    def dump():
        if args.json_out:
            tmp = args.json_out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(doc, f, indent=1)
            os.replace(tmp, args.json_out)

    unknown = [k for k in keys if k not in BY_KEY]
    for k in unknown:
        doc["results"][k] = _na("unknown workload")
    wls = [BY_KEY[k] for k in keys if k in BY_KEY]

    try:
        api = _import_api(args.module)
        doc["version"] = _version(api)
    except RuntimeError as e:
        doc["error"] = str(e)
        doc["error_kind"] = "import"
        for w in wls:
            doc["results"][w.key] = _na(str(e))
        dump()
        return doc

    ns = None
    if any(w.needs_cluster for w in wls):
        try:
            t = time.perf_counter()
            api.init()
            doc["init_s"] = time.perf_counter() - t
            ns = build(api)
        except BaseException as e:
            doc["error"] = f"init failed: {_reason(e)}"
            traceback.print_exc()
            for w in wls:
                if w.needs_cluster:
                    doc["results"][w.key] = _na(doc["error"])
            wls = [w for w in wls if not w.needs_cluster]
    dump()

    for w in wls:
        print(f"[{args.framework}] {w.name} ...", file=sys.stderr, flush=True)
        # the orchestrator watches these two fields to time out a hung workload
        doc["current"], doc["current_started"] = w.key, time.time()
        dump()
        t = time.perf_counter()
        deadline = t + w.budget(cfg) * args.budget_factor
        load1 = os.getloadavg()[0]
        try:
            if w.setup is not None:
                fn, mult = w.setup(api, ns)
                # let start-up work (worker processes for new actors, prestarted
                # replacements, ...) die down before the clock starts
                time.sleep(args.settle)
                snap = cpu_snapshot()
                rec = _measure(fn, mult, cfg, deadline, w.min_warmup_calls)
            else:
                if w.needs_cluster:
                    time.sleep(args.settle)
                snap = cpu_snapshot()
                rec = w.run(api, ns, cfg, deadline)
            # CPU used by processes that are not ours while we measured (noise alarm);
            # for the fresh-process probes our children are outside the tree: skip.
            if w.needs_cluster:
                rec.setdefault("extra", {})["foreign_cpu_cores"] = foreign_cpu(snap, cpu_snapshot())
            rec = {"status": "ok", **rec, "load1_before": load1}
        except BaseException as e:
            traceback.print_exc()
            rec = _na(_reason(e))
            if isinstance(e, KeyboardInterrupt):
                raise
        rec["seconds"] = time.perf_counter() - t
        doc["results"][w.key] = rec
        doc["current"], doc["current_started"] = None, time.time()
        dump()
        print(f"[{args.framework}] {w.name}: {_short(rec, w.unit)}", file=sys.stderr, flush=True)

    if ns is not None:
        t = time.perf_counter()
        try:
            api.shutdown()
        except BaseException as e:
            doc["shutdown_error"] = _reason(e)
        doc["shutdown_s"] = time.perf_counter() - t
        dump()
    return doc


def _measure(fn, mult, cfg, deadline, min_warmup_calls=1):
    from .timing import measure_rate

    return measure_rate(
        fn,
        multiplier=mult,
        warmup=cfg.warmup,
        rounds=cfg.rounds,
        duration=cfg.duration,
        min_warmup_calls=min_warmup_calls,
        deadline=deadline,
    )


def _short(rec: dict, unit: str) -> str:
    if rec.get("status") != "ok":
        return f"n/a: {rec.get('reason')}"
    return f"median {rec['median']:.6g} {unit} (mean {rec['mean']:.6g} +- {rec['std']:.3g})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--framework", required=True, help="label: actorflow or ray")
    ap.add_argument("--module", help="API module to import (default: --framework)")
    ap.add_argument("--workloads", default="", help="comma-separated workload keys")
    ap.add_argument("--json-out", help="result file (rewritten after each workload)")
    ap.add_argument("--probe", choices=["init", "rss"], help="one-shot fresh-process probe")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument(
        "--budget-factor",
        type=float,
        default=1.5,
        help="soft per-workload deadline = expected time x this",
    )
    args = ap.parse_args(argv)
    args.module = args.module or args.framework
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    if args.probe:
        try:
            res = _probe(args)
        except BaseException as e:
            traceback.print_exc()
            res = {"error": _reason(e) if not isinstance(e, RuntimeError) else str(e)}
        print(json.dumps(res), flush=True)
        return 0 if "error" not in res else 1

    doc = run_batch(args)
    if not args.json_out:
        print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
