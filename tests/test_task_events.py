"""Task events: every attempt of a task or actor call is recorded by its owner, reported to the
GCS in batches, and listed by ``list_tasks`` / ``actorflow list tasks``, counted by
``summarize_tasks`` / ``actorflow summary tasks`` and drawn by ``timeline``.

The shared cluster (tests/conftest.py) holds the events of earlier tests too: each test uses
functions of its own names and looks only at those.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import actorflow
from actorflow._private.control.task_events import TaskEventTable
from actorflow._private.protocol.task_events import ERROR, RESOURCES
from actorflow.util import state
from actorflow.util.state import get_task, list_tasks, summarize_tasks

pytestmark = pytest.mark.timeout(90)

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, session_root: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ACTORFLOW_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH")] if p)
    env["ACTORFLOW_SESSION_ROOT"] = session_root
    return subprocess.run(
        [sys.executable, "-m", "actorflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def session_root_of(cluster: dict) -> str:
    return os.path.dirname(cluster["session_dir"])


@actorflow.remote
def ev_square(x):
    return x * x


@actorflow.remote
def ev_fails():
    raise KeyError("no such key: 'ev'")


@actorflow.remote
class EvCounter:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1
        return self.n

    @actorflow.method(enable_task_events=False)
    def quiet(self):
        return "quiet"


def _named(name: str, **filters: str) -> list:
    pairs = [("name", "=", name)] + [(k, "=", v) for k, v in filters.items()]
    return list_tasks(filters=pairs, limit=10_000, detail=True)


def test_tasks_are_listed_with_filters_through_the_api(cluster):
    refs = [ev_square.remote(i) for i in range(5)]
    assert actorflow.get(refs) == [0, 1, 4, 9, 16]
    rows = _named("ev_square")
    assert {r.task_id for r in rows} == {ref.task_id() for ref in refs}
    job_id = actorflow.get_runtime_context().get_job_id()
    for row in rows:
        assert row.state == "FINISHED" and row.type == "NORMAL_TASK"
        assert row.job_id == job_id and row.attempt_number == 0
        assert row.node_id and row.worker_id and row.worker_pid
        assert row.creation_time_ms <= row.start_time_ms <= row.end_time_ms
        assert [e["state"] for e in row.events][-2:] == ["RUNNING", "FINISHED"]
        assert row.required_resources == {"CPU": 1.0}
    assert _named("ev_square", state="FAILED") == []
    assert _named("ev_square", job_id="ffffffff") == []
    assert len(list_tasks(filters=[("name", "=", "ev_square")], limit=2)) == 2
    one = get_task(refs[0])
    assert one is not None and one.task_id == refs[0].task_id() and one.state == "FINISHED"
    brief = list_tasks(filters=[("name", "=", "ev_square")])[0]
    assert brief.events is None  # a detail field, as Ray's


def test_a_failed_task_shows_its_error_type(cluster):
    ref = ev_fails.options(max_retries=0).remote()
    with pytest.raises(KeyError):
        actorflow.get(ref)
    (row,) = _named("ev_fails")
    assert row.state == "FAILED"
    assert row.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "KeyError" in row.error_message and "no such key" in row.error_message


def test_actor_calls_are_listed_with_their_method_and_a_quiet_one_is_not(cluster):
    counter = EvCounter.remote()
    assert actorflow.get([counter.bump.remote() for _ in range(3)]) == [1, 2, 3]
    assert actorflow.get(counter.quiet.remote()) == "quiet"
    loud = counter.bump.options(enable_task_events=False).remote()
    assert actorflow.get(loud) == 4
    rows = _named("EvCounter.bump")
    assert len(rows) == 3 and loud.task_id() not in {r.task_id for r in rows}
    for row in rows:
        assert row.type == "ACTOR_TASK" and row.actor_id == counter.actor_id
        assert row.func_or_class_name == "EvCounter.bump" and row.state == "FINISHED"
        assert row.worker_pid and row.node_id
    assert _named("EvCounter.quiet") == []
    actorflow.kill(counter)


def test_enable_task_events_false_hides_a_task(cluster):
    @actorflow.remote(enable_task_events=False)
    def ev_hidden():
        return 1

    @actorflow.remote
    def ev_shown():
        return 2

    assert actorflow.get([ev_hidden.remote(), ev_shown.options(enable_task_events=False).remote()])
    assert actorflow.get(ev_shown.remote()) == 2
    names = {r.name for r in list_tasks(limit=100_000)}
    assert not any("ev_hidden" in n for n in names)
    assert len([r for r in list_tasks(limit=100_000) if r.name.endswith("ev_shown")]) == 1


def test_a_retried_task_shows_its_attempts(cluster, tmp_path):
    marker = str(tmp_path / "tries")

    @actorflow.remote(max_retries=2, retry_exceptions=True)
    def ev_flaky(path):
        with open(path, "a") as f:
            f.write("x")
        with open(path) as f:
            if len(f.read()) < 3:
                raise RuntimeError("not yet")
        return "third time"

    ref = ev_flaky.remote(marker)
    assert actorflow.get(ref) == "third time"
    rows = sorted(
        (r for r in list_tasks(limit=100_000, detail=True) if r.task_id == ref.task_id()),
        key=lambda r: r.attempt_number,
    )
    assert [(r.attempt_number, r.state) for r in rows] == [
        (0, "FAILED"),
        (1, "FAILED"),
        (2, "FINISHED"),
    ]
    assert rows[0].error_type == "TASK_EXECUTION_EXCEPTION" and "not yet" in rows[0].error_message
    assert get_task(ref).attempt_number == 2
    entry = summarize_tasks()["cluster"]["summary"][rows[0].name]
    assert entry["state_counts"] == {"FINISHED": 1}  # counted once, by its latest attempt


def test_summary_counts_per_function_and_state(cluster):
    @actorflow.remote
    def ev_summed(fail):
        if fail:
            raise ValueError("bad")
        return 1

    refs = [ev_summed.options(max_retries=0).remote(i == 0) for i in range(4)]
    actorflow.wait(refs, num_returns=4, timeout=30)
    summary = summarize_tasks()["cluster"]
    name = next(n for n in summary["summary"] if n.endswith("ev_summed"))
    entry = summary["summary"][name]
    assert entry["type"] == "NORMAL_TASK"
    assert entry["state_counts"] == {"FINISHED": 3, "FAILED": 1}
    assert summary["summary_by"] == "func_name" and summary["num_task_events_dropped"] == 0
    table = state.format_task_summary(summarize_tasks())
    assert name in table and "FAILED" in table


def test_cli_lists_tasks_with_filters_and_summarises(cluster):
    refs = [ev_square.remote(i) for i in range(3)]
    actorflow.get(refs)
    with pytest.raises(KeyError):
        actorflow.get(ev_fails.options(max_retries=0).remote())
    root = session_root_of(cluster)
    done = run_cli("list", "tasks", "--name", "ev_square", "--format", "json", session_root=root)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {ref.task_id() for ref in refs} <= {r["task_id"] for r in listed}
    assert all(r["name"] == "ev_square" and r["state"] == "FINISHED" for r in listed)
    done = run_cli("list", "tasks", "--state", "failed", "--limit", "1000", session_root=root)
    assert done.returncode == 0, done.stderr
    assert "ev_fails" in done.stdout and "TASK_EXECUTION_EXCEPTION" in done.stdout
    assert "ev_square" not in done.stdout
    done = run_cli("list", "tasks", "--name", "ev_square", "--limit", "1", session_root=root)
    assert done.returncode == 0 and "1 task attempt(s)" in done.stdout
    job = actorflow.get_runtime_context().get_job_id()
    done = run_cli("list", "tasks", "--job", job, "--format", "json", session_root=root)
    assert done.returncode == 0 and all(r["job_id"] == job for r in json.loads(done.stdout))
    done = run_cli("summary", "tasks", "--format", "json", session_root=root)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["cluster"]["summary"]
    assert summary["ev_square"]["state_counts"]["FINISHED"] >= 3
    done = run_cli("summary", "tasks", session_root=root)
    assert done.returncode == 0 and "ev_fails" in done.stdout
    done = run_cli("list", "leases", "--format", "json", session_root=root)
    assert done.returncode == 0 and isinstance(json.loads(done.stdout), list)
    done = run_cli("list", "tasks", "--help", session_root=root)
    assert "list leases" in " ".join(done.stdout.split())


def test_timeline_is_a_chrome_trace_with_a_line_per_worker(cluster, tmp_path):
    counter = EvCounter.remote()
    actorflow.get([ev_square.remote(i) for i in range(6)] + [counter.bump.remote()])
    # The shared cluster may still be reporting earlier tests' events: compare the timeline
    # with a listing taken while no new event came in (the same events in both).
    for _ in range(50):
        before = list_tasks(limit=100_000, detail=True)
        events = actorflow.timeline()
        after = list_tasks(limit=100_000, detail=True)
        if len(before) == len(after):
            break
        time.sleep(0.2)
    complete = [e for e in events if e["ph"] == "X"]
    assert complete and all({"name", "pid", "tid", "ts", "dur"} <= set(e) for e in complete)
    mine = [e for e in complete if e["name"] in ("ev_square", "EvCounter.bump")]
    assert {e["name"] for e in mine} == {"ev_square", "EvCounter.bump"}
    rows = [r for r in after if r.start_time_ms]
    lines = {(e["pid"], e["tid"]) for e in complete}
    # One line per worker that ran something: each worker the listing knows has its line
    # (workers of actors long dead are known by address only, on lines of their own).
    known = {(f"node:{r.node_id or '?'}", f"worker:{r.worker_id}") for r in rows if r.worker_id}
    assert known and known <= lines
    assert len(lines) == len({tid for _, tid in lines})  # a worker is on one node's row
    named = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert lines == named
    path = tmp_path / "trace.json"
    assert actorflow.timeline(str(path)) is None
    assert json.loads(path.read_text())[0]["ph"] in ("M", "X")
    out = tmp_path / "cli-trace.json"
    done = run_cli("timeline", "--output", str(out), session_root=session_root_of(cluster))
    assert done.returncode == 0, done.stderr
    assert any(e.get("name") == "EvCounter.bump" for e in json.loads(out.read_text()))
    actorflow.kill(counter)


def test_a_full_buffer_counts_dropped_events(make_cluster, monkeypatch):
    monkeypatch.setenv("ACTORFLOW_TASK_EVENTS_BUFFER_SIZE", "5")
    monkeypatch.setenv("ACTORFLOW_TASK_EVENTS_REPORT_SECONDS", "60")  # reported when listed
    make_cluster(num_cpus=2)

    @actorflow.remote
    def ev_many(i):
        return i

    assert actorflow.get([ev_many.remote(i) for i in range(20)]) == list(range(20))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = list_tasks(limit=1000)
    assert len(rows) == 5
    assert any("15 task event(s) were dropped" in str(w.message) for w in caught)
    assert summarize_tasks()["cluster"]["num_task_events_dropped"] == 15
    rows, dropped = state.task_attempts(limit=1000)
    assert dropped == 15 and "15 task event(s) dropped" in state.format_task_attempts(rows, 15)


def _event(task_id: bytes) -> list:
    """An event as it arrives off the wire (arrays as lists)."""
    return [task_id, 0, "f", "", None, 1.0, 0.0, 1.1, 1.2, 0.1, 1.4, "tcp://w", "w1", None, None]


def test_the_gcs_table_keeps_the_newest_attempts_per_job_and_counts_the_rest():
    table = TaskEventTable(max_per_job=3)
    table.add("01", [_event(b"a"), _event(b"b")])
    failed = _event(b"d")
    failed[ERROR], failed[RESOURCES] = ["TASK_EXECUTION_EXCEPTION", "boom"], [["CPU", 1.0]]
    table.add("01", [_event(b"c"), failed], dropped=2)
    table.add("02", [tuple(_event(b"e"))])  # from an owner in the GCS's own process
    listing = table.listing("01")
    assert [e[0] for _job, e in listing["events"]] == [b"b", b"c", b"d"]
    assert listing["dropped"] == {"01": 3}  # 2 dropped by the owner, 1 evicted here
    assert [job for job, _e in table.listing()["events"]] == ["01", "01", "01", "02"]
    kept = listing["events"][-1][1]
    assert kept[ERROR] == ["TASK_EXECUTION_EXCEPTION", "boom"] and kept[RESOURCES] == [["CPU", 1.0]]
    assert kept[5:13] == [1.0, 0.0, 1.1, 1.2, 0.1, 1.4, "tcp://w", "w1"]
    assert table.listing("02")["events"] == [["02", tuple(_event(b"e"))]]


def test_the_gcs_table_keeps_batches_whole_and_out_of_the_collectors_sight():
    """Batches are kept whole (packed if they came off the wire) and evicted whole once all
    their events are older than the newest max_per_job: what is listed is exactly the newest
    ones, whatever the batch sizes; a full table is a few objects the collector ignores."""
    table = TaskEventTable(max_per_job=50)
    added = 0
    for i, size in enumerate([1, 7, 20, 3, 40, 0, 15, 100, 2, 16, 70]):
        events = [_event(str(added + j).encode()) for j in range(size)]
        table.add("01", [tuple(e) for e in events] if i % 2 else events)
        added += size
        ids = [int(e[0]) for _job, e in table.listing("01")["events"]]
        assert ids == list(range(max(0, added - 50), added))
        assert table.dropped.get("01", 0) == max(0, added - 50)
    batches = table.jobs["01"].batches
    assert len(batches) <= 3  # older batches went whole
    gc.collect()
    assert not any(gc.is_tracked(batch) for batch, _count in batches)
    table.add("03", [], dropped=4)  # a report of drops alone
    assert table.listing("03") == {"events": [], "dropped": {"03": 4}}
