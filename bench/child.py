"""Running one framework's side of a bench in an interpreter of its own (Ray from its venv).

The parent runs ``python -m bench.<module> --child <framework> ...``; the child prints one line
``RESULT <json>`` (``report``), which ``run_child`` returns.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RAY_PYTHON = "/work/rayvenv/bin/python"


def ray_python(given: str = "") -> str:
    """The interpreter to measure Ray with: given, else the usual Ray venv if present."""
    return given or (DEFAULT_RAY_PYTHON if os.path.exists(DEFAULT_RAY_PYTHON) else "")


def report(figures: Any) -> None:
    print("RESULT " + json.dumps(figures), flush=True)


def run_child(python: str, module: str, args: list[str], timeout: float) -> Any:
    # The repository root on the path, so that the other interpreter finds this package.
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    done = subprocess.run(
        [python, "-m", module, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(
        f"{module} {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
