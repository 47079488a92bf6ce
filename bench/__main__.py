"""actorflow benchmark CLI.

    python -m bench                      # actorflow only
    python -m bench --compare ray        # actorflow and Ray, alternating workload by workload
    python -m bench --framework-only ray # Ray only (validates the harness without actorflow)
    python -m bench --quick --only "actor calls"   # subset, ~2-minute settings
    python -m bench --list

Each framework's side runs in its own subprocess (``python -m bench.runner``), one
workload (group) at a time, so the two frameworks never share a process and never have
a cluster up at the same time.  Results go to bench/results/<timestamp>.json (+latest.json,
+ a PNG chart when matplotlib is importable).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import REPO_ROOT, RESULTS_DIR, report
from .workloads import WORKLOADS, Config, Workload, select

DEFAULT_RAY_PYTHON = "/work/rayvenv/bin/python"
WORKLOAD_SLACK_S = 30.0  # hard limit of a workload = its soft budget x factor + this
STARTUP_SLACK_S = 60.0  # hard limit of a runner's import + init(), or of its shutdown()


# ----------------------------------------------------------------------------- frameworks


def resolve_ray_python(explicit: str | None) -> tuple[str | None, str]:
    """Interpreter to run Ray with: --ray-python if given, else this interpreter if it
    can import ray, else /work/rayvenv/bin/python if present."""
    if explicit:
        return explicit, "--ray-python"
    if importlib.util.find_spec("ray") is not None:
        return sys.executable, "current environment"
    if os.path.exists(DEFAULT_RAY_PYTHON):
        return DEFAULT_RAY_PYTHON, "autodetected"
    return None, "not found"


def frameworks(args) -> dict:
    """label -> {module, python, how}, in run order."""
    fws = {}
    want = (
        [args.framework_only]
        if args.framework_only
        else ["actorflow"] + ([args.compare] if args.compare else [])
    )
    for fw in want:
        if fw == "actorflow":
            fws[fw] = {
                "module": args.actorflow_module,
                "python": args.actorflow_python or sys.executable,
                "how": "current",
            }
        elif fw == "ray":
            py, how = resolve_ray_python(args.ray_python)
            fws[fw] = {"module": "ray", "python": py, "how": how}
    return fws


# ----------------------------------------------------------------------------- runner calls


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a runner we started, its process group and any descendant we can see."""
    from .procinfo import descendants

    pids = descendants(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in [proc.pid] + pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
            if sig == signal.SIGTERM:
                time.sleep(1)
        except subprocess.TimeoutExpired:
            pass


def _read_state(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _watch(proc: subprocess.Popen, out: str, group: list[Workload], cfg: Config, args):
    """Wait for the runner; kill it if the workload it is running (or its start-up /
    shutdown) overruns.  Returns (failure reason or None, key of the killed workload)."""
    budgets = {w.key: w.budget(cfg) * args.budget_factor + WORKLOAD_SLACK_S for w in group}
    launched = time.time()
    while True:
        try:
            proc.wait(0.5)
            return None, None
        except subprocess.TimeoutExpired:
            pass
        state = _read_state(out)
        cur = state.get("current")
        since = state.get("current_started") or launched
        limit = budgets.get(cur, STARTUP_SLACK_S) if cur else STARTUP_SLACK_S
        if time.time() - since > limit:
            _kill_tree(proc)
            what = f"'{cur}'" if cur else "start-up/shutdown"
            return f"timeout: runner killed after {limit:.0f}s in {what}", cur


def run_group(fw: str, spec: dict, group: list[Workload], cfg: Config, args, log_dir: Path) -> dict:
    """Run ``group`` for one framework in a fresh runner; return its document.

    A workload that hangs or crashes its runner is recorded as n/a and the rest of
    the group is re-run in a new runner, so one bad workload costs only itself."""
    na = {"status": "n/a"}
    if spec["python"] is None:
        why = "no Ray interpreter: install ray here or pass --ray-python"
        return {
            "results": {w.key: {**na, "reason": why} for w in group},
            "error": why,
            "error_kind": "import",
        }
    fd, out = tempfile.mkstemp(prefix=f"bench-{fw}-", suffix=".json")
    os.close(fd)
    os.unlink(out)
    cmd = [spec["python"], "-m", "bench.runner", "--framework", fw, "--module", spec["module"]]
    cmd += ["--workloads", ",".join(w.key for w in group), "--json-out", out]
    cmd += ["--warmup", str(cfg.warmup), "--rounds", str(cfg.rounds)]
    cmd += ["--duration", str(cfg.duration), "--reps", str(cfg.reps), "--settle", str(cfg.settle)]
    cmd += ["--budget-factor", str(args.budget_factor)]
    env = os.environ.copy()
    paths = [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    log = log_dir / f"{fw}-{group[0].key}{'-etc' if len(group) > 1 else ''}.log"
    t0 = time.perf_counter()
    with open(log, "w") as logf:
        logf.write(" ".join(cmd) + "\n")
        logf.flush()
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            why = f"cannot start {spec['python']}: {e.strerror or e}"
            return {
                "results": {w.key: {**na, "reason": why} for w in group},
                "error": why,
                "error_kind": "import",
            }
        try:
            failure, culprit = _watch(proc, out, group, cfg, args)
        except KeyboardInterrupt:
            _kill_tree(proc)
            raise
    doc = _read_state(out)
    if os.path.exists(out):
        os.unlink(out)
    if failure is None and proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["?"]
        culprit = doc.get("current")
        where = f" in '{culprit}'" if culprit else ""
        failure = f"runner exited {proc.returncode}{where}: {tail[0][:120]} (log {log.name})"
    res = doc.setdefault("results", {})
    missing = [w for w in group if w.key not in res]
    if missing and failure:
        bad = culprit if culprit in {w.key for w in missing} else missing[0].key
        res[bad] = {**na, "reason": failure}
        rest = [w for w in missing if w.key != bad]
        if rest and doc.get("error_kind") != "import":
            res.update(run_group(fw, spec, rest, cfg, args, log_dir)["results"])
    for w in group:
        res.setdefault(w.key, {**na, "reason": failure or "runner produced no result"})
    doc["wall_s"] = time.perf_counter() - t0
    doc["log"] = str(log)
    return doc


def groups_of(wls: list[Workload], size: int) -> list[list[Workload]]:
    """Consecutive groups of cluster workloads (size 0 = all); one-shot probes always alone."""
    out, cur = [], []
    for w in wls:
        if not w.needs_cluster:
            out.append([w])
            continue
        cur.append(w)
        if size and len(cur) >= size:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


# ----------------------------------------------------------------------------- main


def parse(argv):
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--only",
        metavar="PATTERN",
        help="comma-separated substrings/globs of workload names or keys",
    )
    ap.add_argument("--compare", choices=["ray"], help="also run the workloads against Ray")
    ap.add_argument(
        "--framework-only",
        choices=["actorflow", "ray"],
        help="run a single framework (e.g. ray to validate the harness)",
    )
    ap.add_argument(
        "--ray-python",
        help=f"interpreter with ray installed (default: this one if "
        f"it can import ray, else {DEFAULT_RAY_PYTHON})",
    )
    ap.add_argument("--actorflow-python", help="interpreter for the actorflow side (default: this)")
    ap.add_argument(
        "--actorflow-module",
        default="actorflow",
        help="module imported as the actorflow side (harness self-test: ray)",
    )
    ap.add_argument("--quick", action="store_true", help="~2-minute settings (see README)")
    ap.add_argument("--rounds", type=int, help="timed rounds per workload (default 4, quick 3)")
    ap.add_argument("--duration", type=float, help="seconds per round (default 2, quick 0.4)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds (default 1, quick 0.3)")
    ap.add_argument("--reps", type=int, help="repetitions of one-shot figures (default 5, quick 3)")
    ap.add_argument(
        "--settle",
        type=float,
        help="idle seconds after each workload's setup (default 1, quick 0.5)",
    )
    ap.add_argument(
        "--group",
        type=int,
        help="cluster workloads per runner process; 1 = fresh cluster per workload "
        "(default), 0 = one process per framework (default with --quick)",
    )
    ap.add_argument(
        "--budget-factor",
        type=float,
        default=1.5,
        help="soft deadline per workload = expected time x this (hard kill later)",
    )
    ap.add_argument("--no-floor", action="store_true", help="skip the uvloop+msgpack floor")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--list", action="store_true", help="list workloads and exit")
    args = ap.parse_args(argv)
    if args.framework_only and args.compare:
        ap.error("--framework-only and --compare are exclusive")
    q = args.quick
    defaults = {
        "rounds": 3 if q else 4,
        "duration": 0.4 if q else 2.0,
        "warmup": 0.3 if q else 1.0,
        "reps": 3 if q else 5,
        "settle": 0.5 if q else 1.0,
        "group": 0 if q else 1,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def run_floor(quick: bool) -> dict | None:
    """The floor runs in a subprocess of this interpreter (it needs uvloop + msgpack)."""
    fd, out = tempfile.mkstemp(prefix="bench-floor-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "bench.floor", "--json-out", out, "--quiet"] + (
        ["--quick"] if quick else []
    )
    try:
        p = subprocess.run(
            cmd, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
        )
        if p.returncode != 0:
            print(f"floor failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
            return None
        with open(out) as f:
            return json.load(f)
    except (subprocess.TimeoutExpired, OSError, ValueError) as e:
        print(f"floor failed: {e}")
        return None
    finally:
        if os.path.exists(out):
            os.unlink(out)


def _progress(fw: str, w: Workload, rec: dict) -> str:
    if rec.get("status") == "ok":
        return f"{report.LABELS.get(fw, fw)} {report.fmt(rec['median'])} {w.unit}"
    return f"{report.LABELS.get(fw, fw)} n/a ({str(rec.get('reason'))[:70]})"


def main(argv=None) -> int:
    args = parse(argv)
    if args.list:
        kw = max(len(w.key) for w in WORKLOADS)
        nw = max(len(w.name) for w in WORKLOADS)
        for w in WORKLOADS:
            print(f"{w.key:<{kw}} {w.name:<{nw}} {w.unit:<9} {w.doc}")
        return 0
    wls = select(args.only)
    if not wls:
        print(f"no workload matches {args.only!r} (see --list)")
        return 2
    fws = frameworks(args)
    cfg = Config(
        warmup=args.warmup,
        rounds=args.rounds,
        duration=args.duration,
        reps=args.reps,
        settle=args.settle,
    )
    t_start = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = args.out_dir / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "default"
    from .procinfo import cpu_busy

    busy0 = cpu_busy(1.0)
    if busy0 > 0.2:
        print(
            f"warning: CPUs already {100 * busy0:.0f}% busy before the run (other processes); "
            f"figures will be noisy"
        )
    print(
        f"bench: {len(wls)} workloads x {', '.join(fws)}; {mode}: warmup {cfg.warmup}s, "
        f"{cfg.rounds} x {cfg.duration}s rounds, reps {cfg.reps}, group {args.group}"
    )
    for fw, spec in fws.items():
        print(f"  {fw}: module {spec['module']} via {spec['python']} ({spec['how']})")

    floor = None
    if not args.no_floor:
        floor = run_floor(args.quick)
        if floor:
            from .floor import format_floor

            print(format_floor(floor))

    results = {w.key: {} for w in wls}
    fw_meta = {fw: dict(spec) for fw, spec in fws.items()}
    unavailable: dict[str, str] = {}
    interrupted = False
    try:
        for gi, group in enumerate(groups_of(wls, args.group)):
            order = list(fws) if gi % 2 == 0 else list(fws)[::-1]  # alternate who goes first
            for fw in order:
                if fw in unavailable:
                    for w in group:
                        results[w.key][fw] = {"status": "n/a", "reason": unavailable[fw]}
                    continue
                doc = run_group(fw, fws[fw], group, cfg, args, log_dir)
                for k in ("version", "python_version", "init_s", "shutdown_s"):
                    if k in doc:
                        fw_meta[fw].setdefault(k, doc[k])
                if doc.get("error_kind") == "import":
                    unavailable[fw] = doc["error"]
                    fw_meta[fw]["error"] = doc["error"]
                for w in group:
                    results[w.key][fw] = doc["results"][w.key]
            for w in group:
                print(
                    f"  {w.name:<46} "
                    + " | ".join(
                        _progress(fw, w, results[w.key][fw]) for fw in fws if fw in results[w.key]
                    ),
                    flush=True,
                )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: reporting what finished")

    doc = {
        "meta": {
            "timestamp": stamp,
            "mode": mode,
            "argv": sys.argv[1:] if argv is None else argv,
            "cpus": os.cpu_count(),
            "host": platform.node(),
            "platform": platform.platform(),
            "python": sys.executable,
            "config": vars(cfg) | {"group": args.group},
            "elapsed_s": time.perf_counter() - t_start,
            "interrupted": interrupted,
            "cpu_busy_before": busy0,
            "loadavg_end": os.getloadavg(),
        },
        "frameworks_run": list(fws),
        "frameworks": fw_meta,
        "floor": floor,
        "workloads": [
            {
                "key": w.key,
                "name": w.name,
                "unit": w.unit,
                "higher_is_better": w.higher_is_better,
                "floor": w.floor,
                "doc": w.doc,
                "results": results[w.key],
            }
            for w in wls
            if results[w.key]
        ],
    }
    report.annotate(doc)
    print()
    print(report.table(doc))
    paths = report.write_json(doc, args.out_dir, stamp)
    if not args.no_plot:
        paths += report.plot(doc, args.out_dir, stamp)
    print(f"\nwrote {', '.join(str(p) for p in paths)}  (logs: {log_dir})")
    print(f"total {doc['meta']['elapsed_s']:.0f}s")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
