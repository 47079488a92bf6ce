"""Side-by-side tables of two runs (Ray and actorflow) of run_scripts.py and run_tests.py.

    python compat/compare.py --scripts RAY.json ACTORFLOW.json --tests RAY.json ACTORFLOW.json

prints Markdown: per script, its status on each runtime and why it failed; per test file, the
cases collected, passed on Ray, passed on actorflow, and each case that fails on actorflow but
passes on Ray with its one-line reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PASSING = ("passed", "xfailed")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def script_table(ray_run: dict[str, Any], here_run: dict[str, Any]) -> str:
    ray_by = {r["script"]: r for r in ray_run["results"]}
    here_by = {r["script"]: r for r in here_run["results"]}
    rows = ["| script | Ray | actorflow | reason |", "| --- | --- | --- | --- |"]
    for name in sorted(set(ray_by) | set(here_by)):
        ray_r, here_r = ray_by.get(name), here_by.get(name)
        ray_s = ray_r["status"] if ray_r else "-"
        here_s = here_r["status"] if here_r else "-"
        if here_r and here_s not in ("pass", "skipped"):
            reason = here_r["reason"]
        elif ray_r and ray_s not in ("pass",):
            reason = ("Ray: " if here_s == "pass" else "") + ray_r["reason"]
        else:
            reason = ""
        rows.append(f"| {name} | {ray_s} | {here_s} | {_cell(reason)} |")
    totals = []
    for label, by in (("Ray", ray_by), ("actorflow", here_by)):
        passed = sum(r["status"] == "pass" for r in by.values())
        ran = sum(r["status"] != "skipped" for r in by.values())
        totals.append(f"{label} {passed}/{ran}")
    both = sum(
        1
        for n in ray_by
        if ray_by[n]["status"] == "pass" and here_by.get(n, {}).get("status") == "pass"
    )
    ray_passed = sum(r["status"] == "pass" for r in ray_by.values())
    rows.append("")
    rows.append(
        f"Passed: {', '.join(totals)}; of the {ray_passed} that pass on Ray, "
        f"{both} pass on actorflow."
    )
    return "\n".join(rows)


def _passed(result: dict[str, Any] | None) -> set[str]:
    if not result:
        return set()
    return {case for case, r in result["cases"].items() if r["outcome"] in PASSING}


def test_tables(ray_run: dict[str, Any], here_run: dict[str, Any]) -> str:
    names = sorted(set(ray_run["files"]) | set(here_run["files"]))
    rows = [
        "| file | collected | passed on Ray | passed on actorflow | both |",
        "| --- | --- | --- | --- | --- |",
    ]
    details = []
    for name in names:
        ray_r, here_r = ray_run["files"].get(name), here_run["files"].get(name)
        collected = max((r["collected"] for r in (ray_r, here_r) if r), default=0)
        ray_ok, here_ok = _passed(ray_r), _passed(here_r)

        def cell(result: dict[str, Any] | None, ok: set[str]) -> str:
            if result is None:
                return "not run"
            note = {"budget": " (budget hit)", "collect_error": " (collection error)"}
            return f"{len(ok)}{note.get(result['status'], '')}"

        rows.append(
            f"| {name} | {collected} | {cell(ray_r, ray_ok)} | {cell(here_r, here_ok)} "
            f"| {len(ray_ok & here_ok)} |"
        )
        lost = sorted(ray_ok - here_ok)
        if here_r and here_r["collect_errors"]:
            details.append(
                f"**{name}**: does not collect on actorflow: "
                f"{_cell(here_r['collect_errors'][0]['reason'])}"
            )
        elif lost:
            details.append(f"**{name}**: {len(lost)} failing on actorflow, passing on Ray:")
            for case in lost:
                r = here_r["cases"].get(case) if here_r else None
                why = f"{r['outcome']}: {r['reason']}" if r else "not collected"
                details.append(f"- `{case.split('::', 1)[-1]}`: {_cell(why)}")
        gained = sorted(here_ok - ray_ok)
        if gained:
            details.append(
                f"**{name}**: passing on actorflow but not on Ray: "
                + ", ".join(f"`{c.split('::', 1)[-1]}`" for c in gained)
            )
    return "\n".join(rows) + "\n\n" + "\n".join(details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scripts", nargs=2, type=Path, metavar=("RAY", "ACTORFLOW"))
    parser.add_argument("--tests", nargs=2, type=Path, metavar=("RAY", "ACTORFLOW"))
    args = parser.parse_args(argv)
    if not args.scripts and not args.tests:
        parser.error("give --scripts and/or --tests")
    if args.scripts:
        ray_run, here_run = (json.loads(p.read_text()) for p in args.scripts)
        print("## Doc scripts\n\n" + script_table(ray_run, here_run) + "\n")
    if args.tests:
        ray_run, here_run = (json.loads(p.read_text()) for p in args.tests)
        print("## Test files\n\n" + test_tables(ray_run, here_run) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
