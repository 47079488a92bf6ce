"""actorflow benchmark harness (not part of the installed package, not collected by pytest).

Run ``python -m bench --help``.  Each workload is a small function run against an
API module that is either ``actorflow`` or ``ray``; each framework runs in its own
subprocess (``bench.runner``) so the two never share a process.
"""

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
