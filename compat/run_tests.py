"""Run Ray's test files with pytest, one file at a time, and record each case's outcome.

    python compat/run_tests.py --python /work/rayvenv/bin/python /work/compat/ray_tests \
        --json /work/compat/results/tests_ray.json
    python compat/run_tests.py --python .venv/bin/python --alias /work/compat/ray_tests \
        --json /work/compat/results/tests_actorflow.json

The fixtures come from ``compat.fixtures`` (the same on both runtimes) and each phase's outcome
from ``compat.report_plugin``, written as it happens, so a file ended at its budget still counts
the cases that finished. Each case has a timeout (pytest-timeout, signal method); each file has a
budget, after which its process group and every process it started are ended.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `compat` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat import procs

REPO = Path(__file__).resolve().parent.parent
ALIAS_DIR = REPO / "compat" / "ray_alias"
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def fold(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per case: one outcome (passed, failed, error, skipped, xfailed, xpassed, or not run)
    and the reason of the phase that decided it."""
    collected: list[str] = []
    collect_errors = []
    phases: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        if record["event"] == "collected":
            collected = record["ids"]
        elif record["event"] == "collect_error":
            collect_errors.append({"id": record["id"], "reason": record["reason"]})
        else:
            phases.setdefault(record["id"], {})[record["when"]] = record
    cases = {}
    for case in collected:
        seen = phases.get(case, {})
        setup, call, teardown = seen.get("setup"), seen.get("call"), seen.get("teardown")
        seconds = sum(p["seconds"] for p in seen.values())
        if setup is None:
            outcome, reason = "not run", "the file's budget ran out first"
        elif setup["outcome"] == "failed":
            outcome, reason = "error", "setup: " + setup["reason"]
        elif setup["outcome"] == "skipped":
            outcome, reason = "skipped", setup["reason"]
        elif call is None:
            outcome, reason = "not run", "ended at the file's budget while running"
        else:
            outcome, reason = call["outcome"], call["reason"]
            if outcome == "passed" and teardown and teardown["outcome"] == "failed":
                outcome, reason = "error", "teardown: " + teardown["reason"]
        cases[case] = {"outcome": outcome, "reason": reason, "seconds": round(seconds, 2)}
    return {"collected": len(collected), "cases": cases, "collect_errors": collect_errors}


def run_file(
    test_file: Path, python: str, alias: bool, timeout: float, budget: float, scratch: Path
) -> dict[str, Any]:
    workdir = scratch / test_file.stem
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.jsonl"
    report.unlink(missing_ok=True)
    ini = workdir / "pytest.ini"
    ini.write_text(INI)
    alias_dirs = [str(ALIAS_DIR)] if alias else []
    # The repository root (for compat.*) and the test folder (workers import the test module
    # to unpickle what it defines) on PYTHONPATH, for both runtimes alike.
    env = procs.base_env(python, alias_dirs, [str(REPO), str(test_file.parent)])
    env["COMPAT_REPORT"] = str(report)
    if alias:  # a Ray internal imported at a file's top fails only the cases that use it
        env["COMPAT_LENIENT_IMPORTS"] = "1"
    argv = [
        python,
        "-m",
        "pytest",
        str(test_file),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "compat.fixtures",
        "-p",
        "compat.report_plugin",
        "-c",
        str(ini),
        "--rootdir",
        str(test_file.parent),
        f"--timeout={timeout:g}",
        "--timeout-method=signal",
    ]
    with procs.private_ray_tmpdir(env):
        done = procs.run(
            argv,
            timeout=budget,
            cwd=str(workdir),
            env=env,
            stdout_path=str(workdir / "stdout.txt"),
            stderr_path=str(workdir / "stderr.txt"),
        )
    records = []
    if report.exists():
        records = [json.loads(line) for line in report.read_text().splitlines() if line]
    folded = fold(records)
    if done.timed_out:
        status = "budget"
    elif folded["collect_errors"] or (done.returncode not in (0, 1, 5) and not folded["cases"]):
        status = "collect_error"
    else:
        status = "completed"
    result = {
        "file": test_file.name,
        "status": status,
        "returncode": done.returncode,
        "seconds": round(done.seconds, 1),
        **folded,
    }
    if status == "collect_error" and not folded["collect_errors"]:
        result["collect_errors"] = [
            {
                "id": test_file.name,
                "reason": procs.last_error_line(done.stdout + "\n" + done.stderr),
            }
        ]
    return result


def summary_line(result: dict[str, Any]) -> str:
    outcomes = [case["outcome"] for case in result["cases"].values()]
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    text = ", ".join(f"{n} {o}" for o, n in counts.items()) or "no cases"
    if result["collect_errors"]:
        text += f"; collection error: {result['collect_errors'][0]['reason']}"
    return (
        f"{result['status']:13} {result['seconds']:6.1f}s  {result['file']}: "
        f"{result['collected']} collected, {text}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--python", required=True)
    parser.add_argument("--alias", action="store_true", help="import ray -> actorflow")
    parser.add_argument("--json", type=Path, required=True, help="results (merged by file)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per file")
    parser.add_argument("--only", nargs="*", help="run only these files (names or stems)")
    args = parser.parse_args(argv)
    if os.sep in args.python:  # each run has its own working directory
        args.python = os.path.abspath(args.python)

    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    files = sorted(args.folder.glob("test_*.py"))
    if args.only:
        files = [f for f in files if f.name in args.only or f.stem in args.only]
    if not files:
        parser.error(f"no test files to run in {args.folder}")
    # Results of earlier runs of other files are kept: files can be run one at a time.
    merged: dict[str, Any] = {
        "runtime": "actorflow" if args.alias else "ray",
        "python": args.python,
        "files": {},
    }
    if args.json.exists():
        merged["files"] = json.loads(args.json.read_text()).get("files", {})
    scratch = args.json.with_suffix("") / "work"
    start = time.monotonic()
    for test_file in files:
        result = run_file(test_file, args.python, args.alias, args.timeout, args.budget, scratch)
        merged["files"][test_file.name] = result
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(merged, indent=1))
        print(summary_line(result), flush=True)
    print(f"{len(files)} files in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
