"""Smoke tests for the runnable examples in examples/.

Each example is run as a script in a subprocess, exactly as a user would run
it, and its output is checked for results that only a working run can print.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


def example_env() -> dict:
    """The environment for an example: the repo on sys.path, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_example(name: str, *args: str, timeout: float = 100) -> str:
    """Run examples/<name> to completion; return its stdout.

    Like ``subprocess.run(..., timeout=..., capture_output=True)``, except
    that the example runs in its own session so that on a timeout the whole
    process group it started (e.g. worker processes) is killed too.
    """
    cmd = [sys.executable, str(EXAMPLES / name), *args]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=example_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"{name} did not finish within {timeout} s\n"
            f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )
    assert proc.returncode == 0, (
        f"{name} exited with {proc.returncode}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    )
    return stdout


def expect(stdout: str, *snippets: str) -> None:
    missing = [s for s in snippets if s not in stdout]
    assert not missing, f"missing from the output: {missing}\n--- stdout ---\n{stdout}"


def search(pattern: str, stdout: str) -> re.Match:
    match = re.search(pattern, stdout)
    assert match, f"no match for {pattern!r}\n--- stdout ---\n{stdout}"
    return match


# --- tasks ------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_parallel_retrieval():
    out = run_example("parallel_retrieval.py")
    expect(
        out,
        "== serial ==",
        "(0, 'Learning')",
        "(1, 'Ray')",
        "(3, 'Distributed')",
        "(7, 'Learning')",
        "== all results ==",
    )
    # The serial run sleeps 0 + 0.1 + ... + 0.7 = 2.8 s.
    serial = float(search(r"serial: (\d+\.\d+) s", out).group(1))
    assert serial >= 2.75, out
    # The wait loop printed the results two at a time: 4 batches + the summary.
    wait_part = out.split("== parallel (actorflow.wait, two at a time) ==")[1]
    assert wait_part.split("== all results ==")[0].count("Runtime:") == 4, out
    speed_up = float(search(r"parallel speed-up: (\d+\.\d+)x", out).group(1))
    assert speed_up > 1.5, out


@pytest.mark.timeout(120)
def test_pipelining():
    out = run_example("pipelining.py")
    expect(
        out,
        "generated numbers [2, 19, 10], sum_values -> 31",
        "sum_of_squares(4) = 14, sum_of_squares(6) = 55",
        "ready: alpha found it after 0.3 s",
        "ready: charlie found it after 0.1 s",
        "ready: foxtrot found it after 0.2 s",
        "3 ready after",
        "cancelled searches: 3",
    )
    assert "finished anyway" not in out, out


def test_dag_pipeline():
    out = run_example("dag_pipeline.py")
    expect(
        out,
        "lazy execute -> [9, 'compiled']",
        "compiled execute -> [9, 'compiled']",
        "1000 documents, 6000 words",
        "a failing stage: ValueError: empty document",
        "still usable -> [3, 'more']",
        "after teardown the actors take calls: 2",
    )


@pytest.mark.timeout(120)
def test_word_count():
    out = run_example("word_count.py")
    expect(
        out,
        "21 lines of the Zen of Python in 3 chunks",
        "143 words, 85 distinct",
        "  is: 10\n",
        "  better: 8\n",
        "  than: 8\n",
        "  the: 6\n",
        "  to: 5\n",
    )


# --- actors -----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_counter():
    out = run_example("counter.py")
    expect(
        out,
        "sync: increment -> 1",
        "sync: four more increments -> [2, 3, 4, 5]",
        "async: await counter.increment.remote() -> 6",
        "async: gathered increments -> [7, 8, 9, 10, 11]",
        "final counter value: 11",
    )


@pytest.mark.timeout(120)
def test_bank_account():
    out = run_example("bank_account.py")
    expect(
        out,
        "withdraw 1000 refused (caught as TaskError): InsufficientFundsError: "
        "cannot withdraw 1000: balance of alice is 120",
        "it is also an InsufficientFundsError: True",
        "withdraw 500 refused (caught as InsufficientFundsError); it is also a TaskError: True",
        "deposit -5 refused (caught as ValueError): ValueError",
        "deposit 10 -> balance 130",
        "final balance: 130",
    )


@pytest.mark.timeout(120)
def test_persistent_account():
    out = run_example("persistent_account.py")
    expect(
        out,
        "before the crash: balance=75 transactions=3",
        "saved state on disk: {'balance': 75, 'transactions': 3}",
        "crash(): the actor's process died",
        "after the restart: balance=75 transactions=3",
        "restored=True",
        "restarted in a new process: True",
        "deposit 25 -> balance 100",
        "saved state on disk: {'balance': 100, 'transactions': 4}",
        "final balance: 100",
    )


@pytest.mark.timeout(120)
def test_actor_pool():
    out = run_example("actor_pool.py")
    expect(
        out,
        "squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
        "submitted [3, 1, 4, 1, 5, 9, 2, 6] -> [9, 1, 16, 1, 25, 81, 4, 36]",
        "sum of submitted squares: 173",
        "total items processed: 26",
    )
    unordered = re.findall(r"(\d)\^2 = +(\d+) from worker-\d", out)
    assert sorted((int(x), int(sq)) for x, sq in unordered) == [(x, x * x) for x in range(8)], out


@pytest.mark.timeout(120)
def test_actor_mesh():
    out = run_example("actor_mesh.py")
    expect(
        out,
        "mesh {'host': 2, 'gpu': 2}, 4 members",
        "rank 3 at {'host': 1, 'gpu': 1}",
        "arrived: rank 3 loss",
        "slice host=1: shape {'gpu': 2}, ranks [2, 3]",
        "mesh[0, 1] is one actor: rank 1 at {'host': 0, 'gpu': 1}",
        "after killing rank 2: 3 answered, failed: 2",
        "supervised mesh after a restart: [\"rank 0 at {'rank': 0}\", \"rank 1 at {'rank': 1}\"",
        "restarts per member: [0, 1, 0]",
    )
    sums = re.search(r"sum of losses ([0-9.]+) \(== ([0-9.]+)\)", out)
    assert sums and sums.group(1) == sums.group(2), out


def test_pool_actor():
    out = run_example("pool_actor.py")
    expect(
        out,
        "embed('hello') -> [1, 2, 1]",
        "from a task -> [1, 2, 1]",
        "driver got 10 vectors, the client actor got 10",
        "full pool, block=False -> PoolFullError: pool 'embed' is full: 4 calls "
        "queued, its limit (max_queued) is 4",
        "the busy calls: ['done', 'done', 'done', 'done', 'done', 'done']",
        "call on a killed member -> done",
        "restarts 1, members 2",
    )


@pytest.mark.timeout(120)
def test_typed_handles():
    out = run_example("typed_handles.py")
    expect(
        out,
        "square(7) = 49",
        "squares: [0, 1, 4, 9]",
        "await counter.add.remote(2) -> 12",
        "total after [1, 2, 3]: 18",
        "describe -> Counter at 18",
    )


@pytest.mark.timeout(120)
def test_concurrency():
    out = run_example("concurrency.py")

    def timing(label: str) -> tuple:
        match = search(
            re.escape(label) + r": 10 calls of 0.5 s took (\d+\.\d+) s "
            r"\(at most (\d+) at once\)",
            out,
        )
        return float(match.group(1)), int(match.group(2))

    async_time, async_peak = timing("AsyncActor    max_concurrency=5")
    threaded_time, threaded_peak = timing("ThreadedActor max_concurrency=3")
    serial_time, serial_peak = timing("ThreadedActor max_concurrency=1")
    assert (async_peak, threaded_peak, serial_peak) == (5, 3, 1), out
    assert 0.95 <= async_time < 2.5, out  # 2 rounds of 0.5 s
    assert 1.95 <= threaded_time < 3.5, out  # 4 rounds of 0.5 s
    assert serial_time >= 4.95, out  # 10 rounds of 0.5 s


@pytest.mark.timeout(120)
def test_data_tracker():
    out = run_example("data_tracker.py")
    expect(
        out,
        "5 workers processed 100 items",
        "increments per worker: {'worker-0': 20, 'worker-1': 20, 'worker-2': 20, "
        "'worker-3': 20, 'worker-4': 20}",
        "DataTracker counts: 100",
    )


# --- web service ------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body=None) -> tuple:
    """Make a request; return ``(status, decoded JSON body)``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.timeout(120)
def test_web_service(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(stdout_path, "w") as stdout_file, open(stderr_path, "w") as stderr_file:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "web_service.py"), "--port", str(port)],
            cwd=REPO_ROOT,
            env=example_env(),
            stdout=stdout_file,
            stderr=stderr_file,
            start_new_session=True,
        )

    def output() -> str:
        return (
            f"--- stdout ---\n{stdout_path.read_text()}\n--- stderr ---\n{stderr_path.read_text()}"
        )

    try:
        # Wait (bounded) until the server answers.
        deadline = time.monotonic() + 45
        while True:
            assert proc.poll() is None, f"server exited with {proc.returncode}\n{output()}"
            try:
                if http("GET", base + "/health") == (200, {"status": "ok"}):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server did not come up\n{output()}"
            time.sleep(0.2)

        assert http("GET", base + "/counter") == (200, {"value": 0})
        assert http("POST", base + "/counter/increment", {"by": 2}) == (200, {"value": 2})

        # Concurrent increments from several client threads are all counted.
        statuses = []
        threads = [
            threading.Thread(
                target=lambda: statuses.append(http("POST", base + "/counter/increment")[0])
            )
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert statuses == [200] * 8
        assert http("GET", base + "/counter") == (200, {"value": 10})
        assert http("POST", base + "/counter/increment", {"by": "x"})[0] == 400

        assert http("PUT", base + "/kv/fruit", {"value": ["apple", "pear"]}) == (
            200,
            {"key": "fruit", "value": ["apple", "pear"]},
        )
        assert http("PUT", base + "/kv/n", {"value": 7}) == (200, {"key": "n", "value": 7})
        assert http("GET", base + "/kv/fruit") == (
            200,
            {"key": "fruit", "value": ["apple", "pear"]},
        )
        assert http("GET", base + "/kv") == (200, {"keys": ["fruit", "n"]})
        assert http("DELETE", base + "/kv/n") == (200, {"key": "n", "deleted": True})
        assert http("DELETE", base + "/kv/n") == (200, {"key": "n", "deleted": False})
        assert http("GET", base + "/kv/n")[0] == 404

        # SIGTERM shuts the server down cleanly.
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=30)
        assert returncode == 0, f"exit code {returncode} after SIGTERM\n{output()}"
        assert "server stopped" in stdout_path.read_text(), output()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


@pytest.mark.timeout(120)
def test_web_service_self_test():
    out = run_example("web_service.py", "--self-test")
    expect(
        out,
        "GET /health -> 200 {'status': 'ok'}",
        "10 concurrent POST /counter/increment -> values [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
        "POST /counter/increment -> 200 {'value': 15}",
        "GET /kv -> 200 {'keys': ['answer', 'language']}",
        "GET /kv/answer -> 404",
        "GET /report/ada -> 200 {'profile': {'name': 'Ada Lovelace', 'born': 1815}, "
        "'history': ['ada logged in', 'ada logged out']}",
        "GET /report/ghost?seconds=30 -> 404 {'error': 'no such user: ghost'}",
        "no stray remote work after the failed request",
        "self-test passed",
    )


# --- supervision ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_supervision_tree():
    out = run_example("supervision_tree.py")
    expect(
        out,
        "tree started: bank -> ledger, workers; workers -> flaky-1, flaky-2",
        "job 7: flaky-2 crashed on attempt 1; retrying",
        "[bank.workers/flaky-2] failed: dead: its worker process ",
        "[bank.workers/flaky-2] restarted: restart 1",
        "ledger before its crash: balance 2100, 20 deposits",
        "[bank/ledger] failed: dead: its worker process ",
        "[bank/ledger] restarted: restart 1",
        "ledger after its restart: balance 2100, restored from disk: True, new process: True",
        "[bank/workers] failed: dead: supervisor bank.workers gave up: restart intensity "
        "exceeded: more than 3 restarts within 10 s",
        "[bank/workers] restarted: restart 1",
        "the bank restarted the workers supervisor, with new workers",
        "bank's children: {'ledger': ('running', 1), 'workers': ('running', 1)}",
        "summary: 30 jobs done, balance 4650 (expected 4650), "
        "ledger restored after its crash: True",
        "supervision tree shut down",
    )


# --- clusters ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_cluster():
    out = run_example("cluster.py")
    expect(
        out,
        "cluster: 2 nodes, 4 CPUs",
        "SPREAD: 8 tasks ran on 2 nodes",
        "shard of 5,000,000 rows from the ssd node, summed here: 12,499,997,500,000",
    )
    nodes = re.findall(r"node ([0-9a-f]{8}) +(?:\(head\))? *tcp://", out)
    assert len(nodes) == 2, out
    ssd_node = search(
        r"node ([0-9a-f]{8}) +tcp://\S+ \{'CPU': 2.0, 'memory': [0-9.]+, 'ssd': 1.0\}", out
    ).group(1)
    assert search(r"hello from node ([0-9a-f]{8})", out).group(1) == ssd_node
