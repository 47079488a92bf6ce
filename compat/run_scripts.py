"""Run every ``*.py`` script of a folder with one interpreter and report pass/fail/timeout.

    python compat/run_scripts.py --python /work/rayvenv/bin/python /work/compat/ray_docs \
        --json /work/compat/results/docs_ray.json
    python compat/run_scripts.py --python .venv/bin/python --alias /work/compat/ray_docs \
        --json /work/compat/results/docs_actorflow.json

Each script runs alone, in its own process group and its own scratch directory, with a
timeout; afterwards its group and every process it started are ended. ``--alias`` puts
``compat/ray_alias`` first on PYTHONPATH, so ``import ray`` is actorflow. It fetches nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `compat` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat import procs

REPO = Path(__file__).resolve().parent.parent
ALIAS_DIR = REPO / "compat" / "ray_alias"

# Scripts not run unless --run-unsafe: they harm a shared machine whatever the runtime.
UNSAFE = {
    "limiting_memory_usage.py": "allocates memory until something kills it (shared machine)",
    "ray_oom_prevention.py": "allocates memory until something kills it (shared machine)",
    "namespaces.py": "runs `ray stop --force`, which ends every Ray process on the machine",
    "limit_tasks.py": "a load test: 1,000,000 calls each with an 8 MB argument",
}


def run_one(script: Path, python: str, alias: bool, timeout: float, scratch: Path) -> dict:
    workdir = scratch / script.stem
    workdir.mkdir(parents=True, exist_ok=True)
    alias_dirs = [str(ALIAS_DIR), str(REPO)] if alias else []
    env = procs.base_env(python, alias_dirs, [str(script.parent)])
    with procs.private_ray_tmpdir(env):
        done = procs.run(
            [python, str(script)],
            timeout=timeout,
            cwd=str(workdir),
            env=env,
            stdout_path=str(workdir / "stdout.txt"),
            stderr_path=str(workdir / "stderr.txt"),
        )
    if done.timed_out:
        status, reason = "timeout", f"no exit within {timeout:.0f} s"
        tail = procs.last_error_line(done.stderr)
        if tail:
            reason += f" (last stderr line: {tail})"
    elif done.returncode == 0:
        status, reason = "pass", ""
    else:
        status = "fail"
        reason = procs.last_error_line(done.stderr) or procs.last_error_line(done.stdout)
        reason = reason or f"exit code {done.returncode}"
    return {
        "script": script.name,
        "status": status,
        "returncode": done.returncode,
        "seconds": round(done.seconds, 1),
        "reason": reason,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--python", required=True, help="the interpreter to run scripts with")
    parser.add_argument("--alias", action="store_true", help="import ray -> actorflow")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per script")
    parser.add_argument("--only", nargs="*", help="run only these script names")
    parser.add_argument("--run-unsafe", action="store_true", help="also run UNSAFE scripts")
    args = parser.parse_args(argv)
    if os.sep in args.python:  # each run has its own working directory
        args.python = os.path.abspath(args.python)

    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    scripts = sorted(args.folder.glob("*.py"))
    if args.only:
        scripts = [s for s in scripts if s.name in args.only or s.stem in args.only]
    if not scripts:
        parser.error(f"no scripts to run in {args.folder}")
    label = "actorflow" if args.alias else os.path.basename(os.path.dirname(args.python))
    scratch = Path(args.json or "compat_runs").with_suffix("") / "work"
    # Results of earlier runs of other scripts are kept: a rerun of some (--only) merges in.
    earlier: dict[str, dict] = {}
    if args.json and args.json.exists():
        earlier = {r["script"]: r for r in json.loads(args.json.read_text())["results"]}
    results: list[dict] = []
    start = time.monotonic()
    for script in scripts:
        if script.name in UNSAFE and not args.run_unsafe:
            result = {
                "script": script.name,
                "status": "skipped",
                "returncode": None,
                "seconds": 0.0,
                "reason": UNSAFE[script.name],
            }
        else:
            result = run_one(script, args.python, args.alias, args.timeout, scratch)
        results.append(result)
        print(
            f"{result['status']:8} {result['seconds']:6.1f}s  {script.name}  {result['reason']}",
            flush=True,
        )
        if args.json:  # written after every script, so a long run can be read as it goes
            merged = {**earlier, **{r["script"]: r for r in results}}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(
                    {
                        "runtime": label,
                        "python": args.python,
                        "alias": args.alias,
                        "results": [merged[name] for name in sorted(merged)],
                    },
                    indent=1,
                )
            )
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "timeout")}
    print(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['timeout']} timed out "
        f"in {time.monotonic() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
