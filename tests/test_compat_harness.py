"""The Ray-compatibility harness in compat/: the ray alias, the script runner (pass, fail,
timeout, every process it started ended), the folding of pytest phases into case outcomes, and
the comparison tables. No cluster is started here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # compat/ is a folder of the repository, not an installed package

from compat import compare, md_testcode, procs, run_scripts, run_tests  # noqa: E402

ALIAS = REPO / "compat" / "ray_alias"


def run_with_alias(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, PYTHONPATH=f"{ALIAS}{os.pathsep}{REPO}", **env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_alias_maps_ray_modules_to_actorflow_modules() -> None:
    done = run_with_alias(
        """
        import actorflow, actorflow.util.queue, actorflow.exceptions
        import ray, ray.util.queue
        from ray.exceptions import RayTaskError
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        assert ray is actorflow
        assert ray.util.queue is actorflow.util.queue
        assert ray.util.queue.__spec__.name == "actorflow.util.queue"
        assert RayTaskError is actorflow.exceptions.RayTaskError
        import ray._private.test_utils as helpers
        assert helpers.__name__ == "compat.test_utils"
        import ray.cluster_utils
        assert ray.cluster_utils.__name__ == "compat.cluster_utils"
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_alias_names_the_missing_actorflow_module() -> None:
    done = run_with_alias("import ray.no_such_part")
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'actorflow.no_such_part'" in done.stderr


def test_lenient_imports_fail_only_where_used() -> None:
    done = run_with_alias(
        """
        from ray._private.no_such_module import CONSTANT
        print("imported")
        CONSTANT()
        """,
        COMPAT_LENIENT_IMPORTS="1",
    )
    assert done.stdout.strip() == "imported"
    assert "ModuleNotFoundError" in done.stderr
    assert "actorflow._private.no_such_module" in done.stderr


def test_lenient_imports_stand_in_for_missing_names_only() -> None:
    done = run_with_alias(
        """
        from ray.util import queue, NoSuchName
        import actorflow.util.queue
        assert queue is actorflow.util.queue  # a real submodule is still imported
        print("imported")
        NoSuchName()
        """,
        COMPAT_LENIENT_IMPORTS="1",
    )
    assert done.stdout.strip() == "imported", done.stderr
    assert "ImportError: cannot import name 'NoSuchName' from 'actorflow.util'" in done.stderr


def write(folder: Path, name: str, code: str) -> None:
    (folder / name).write_text(textwrap.dedent(code))


def test_script_runner_reports_pass_fail_and_timeout(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write(scripts, "ok.py", "print('fine')\n")
    write(scripts, "boom.py", "raise ValueError('boom')\n")
    write(scripts, "hang.py", "import time\ntime.sleep(60)\n")
    out = tmp_path / "out.json"
    args = [str(scripts), "--python", sys.executable, "--json", str(out), "--timeout", "2"]
    assert run_scripts.main(args) == 0
    results = {r["script"]: r for r in json.loads(out.read_text())["results"]}
    assert results["ok.py"]["status"] == "pass"
    assert results["boom.py"]["status"] == "fail"
    assert results["boom.py"]["reason"] == "ValueError: boom"
    assert results["hang.py"]["status"] == "timeout"
    assert results["hang.py"]["seconds"] < 30


def test_each_run_has_a_ray_temp_root_of_its_own(tmp_path: Path) -> None:
    # A Ray cluster someone else started on the machine (its ray_current_cluster file under
    # the shared /tmp/ray) must not be what a run's ray.init() joins.
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    code = (
        "import os, pathlib\n"
        "root = os.environ['RAY_TMPDIR']\n"
        "assert root != '/tmp' and os.path.isdir(root), root\n"
        "pathlib.Path(root, 'marker').write_text('x')\n"
        "print(root)\n"
    )
    write(scripts, "a.py", code)
    write(scripts, "b.py", code)
    out = tmp_path / "out.json"
    args = [str(scripts), "--python", sys.executable, "--json", str(out), "--timeout", "20"]
    assert run_scripts.main(args) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["status"] for r in results] == ["pass", "pass"]
    roots = [(tmp_path / "out" / "work" / s / "stdout.txt").read_text().strip() for s in "ab"]
    assert roots[0] != roots[1]
    assert not any(os.path.exists(root) for root in roots)  # removed after the run


def _alive(pid: int) -> bool:
    stat = procs._stat(pid)
    return stat is not None and stat[2] != "Z"


def test_runner_ends_processes_that_left_its_group(tmp_path: Path) -> None:
    # The script starts a child in a session of its own (as daemons do), then hangs.
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "spawn.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                     start_new_session=True)
            open({str(pid_file)!r}, "w").write(str(child.pid))
            time.sleep(120)
            """
        )
    )
    done = procs.run(
        [sys.executable, str(script)],
        timeout=3,
        stdout_path=str(tmp_path / "out"),
        stderr_path=str(tmp_path / "err"),
    )
    assert done.timed_out
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_last_error_line_takes_the_exception_of_the_last_traceback() -> None:
    text = (
        'log line\nTraceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "    f()\nKeyError: 'a'\n"
    )
    assert procs.last_error_line(text) == "KeyError: 'a'"
    assert procs.last_error_line("just this\n\n") == "just this"


def phase(case: str, when: str, outcome: str, reason: str = "") -> dict:
    return {
        "event": "phase",
        "id": case,
        "when": when,
        "outcome": outcome,
        "seconds": 0.1,
        "reason": reason,
    }


def test_fold_turns_phases_into_one_outcome_per_case() -> None:
    records = [
        {"event": "collected", "ids": ["f::ok", "f::bad", "f::err", "f::torn", "f::never"]},
        phase("f::ok", "setup", "passed"),
        phase("f::ok", "call", "passed"),
        phase("f::ok", "teardown", "passed"),
        phase("f::bad", "setup", "passed"),
        phase("f::bad", "call", "failed", "assert 1 == 2"),
        phase("f::err", "setup", "failed", "fixture broke"),
        phase("f::torn", "setup", "passed"),
        phase("f::torn", "call", "passed"),
        phase("f::torn", "teardown", "failed", "leak"),
    ]
    cases = run_tests.fold(records)["cases"]
    assert cases["f::ok"]["outcome"] == "passed"
    assert cases["f::bad"] == {"outcome": "failed", "reason": "assert 1 == 2", "seconds": 0.2}
    assert cases["f::err"]["outcome"] == "error"
    assert cases["f::err"]["reason"] == "setup: fixture broke"
    assert cases["f::torn"]["outcome"] == "error"
    assert cases["f::never"]["outcome"] == "not run"


def test_compare_lists_cases_failing_here_but_passing_on_ray() -> None:
    def run(outcomes: dict[str, str]) -> dict:
        cases = {c: {"outcome": o, "reason": f"why {c}", "seconds": 0} for c, o in outcomes.items()}
        return {
            "files": {
                "test_x.py": {
                    "status": "completed",
                    "collected": len(cases),
                    "cases": cases,
                    "collect_errors": [],
                }
            }
        }

    ray_run = run({"test_x.py::a": "passed", "test_x.py::b": "passed"})
    here_run = run({"test_x.py::a": "passed", "test_x.py::b": "failed"})
    table = compare.test_tables(ray_run, here_run)
    assert "| test_x.py | 2 | 2 | 1 | 1 |" in table
    assert "- `b`: failed: why test_x.py::b" in table


@pytest.mark.parametrize("here_status", ["pass", "fail"])
def test_compare_script_table(here_status: str) -> None:
    ray_run = {"results": [{"script": "a.py", "status": "pass", "reason": ""}]}
    here_run = {"results": [{"script": "a.py", "status": here_status, "reason": "E: x"}]}
    table = compare.script_table(ray_run, here_run)
    expected = "" if here_status == "pass" else "E: x"
    assert f"| a.py | pass | {here_status} | {expected} |" in table


def test_md_testcode_keeps_runnable_blocks_in_order() -> None:
    page = textwrap.dedent(
        """
        # Title

        ```{testcode}
        import ray
        x = 1
        ```

        ```{testoutput}
        1
        ```

        ```{testcode}
        :hide:

        y = x + 1
        ```

        ```{testcode}
        :skipif: True

        raise SystemExit("never run")
        ```

        ```python
        not a testcode block
        ```
        """
    )
    assert md_testcode.page_to_script(page) == "import ray\nx = 1\n\ny = x + 1\n"


def test_md_testcode_refuses_a_page_without_blocks_or_with_an_open_block() -> None:
    with pytest.raises(ValueError, match="no runnable"):
        md_testcode.page_to_script("```{testcode}\n:skipif: True\n\nx = 1\n```\n")
    with pytest.raises(ValueError, match="not closed"):
        md_testcode.page_to_script("```{testcode}\nx = 1\n")
