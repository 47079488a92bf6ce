"""Inspecting objects: ``actorflow.util.state`` (list_objects, object_store_stats,
memory_summary) and the ``actorflow memory`` command, from inside the cluster and from outside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import actorflow
from actorflow import cli
from actorflow.util import state

REPO_ROOT = Path(__file__).resolve().parent.parent
LARGE_BYTES = 200 * 1024  # above the 100 KiB inline limit: goes to the object store


@actorflow.remote
class Keeper:
    def keep(self, refs: list) -> int:
        self.refs = refs
        return len(refs)

    def drop(self) -> None:
        self.refs = []


def row_of(obj_id: str, address: str | None = None) -> dict[str, Any] | None:
    return next((r for r in state.object_rows(address) if r["object_id"] == obj_id), None)


def run_cli(
    *args: str, session_root: str | None = None, token: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """`python -m actorflow.cli ARGS` as an outside process, waited for (killed on timeout)."""
    env = {k: v for k, v in os.environ.items() if k != "ACTORFLOW_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH")] if p)
    if session_root is not None:
        env["ACTORFLOW_SESSION_ROOT"] = session_root
    if token is not None:
        env["ACTORFLOW_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "actorflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def session_root_of(cluster: dict[str, Any]) -> str:
    return os.path.dirname(cluster["session_dir"])


def test_objects_inline_shared_and_borrowed(cluster, poll_until):
    small = actorflow.put(b"x" * 100)
    large = actorflow.put(np.ones(LARGE_BYTES // 8))
    keeper = Keeper.remote()
    assert actorflow.get(keeper.keep.remote([large])) == 1  # in a list: the actor gets the ref
    large_id = large.hex()

    held = poll_until(
        lambda: (r := row_of(large_id)) and r["borrowers"] >= 1 and r,
        message="the actor's borrow reaches the owner",
    )
    assert held["where"] == "shared"
    assert held["size"] >= LARGE_BYTES
    assert held["local_refs"] == 1
    assert held["owner_pid"] == os.getpid()
    assert held["owner"] == cluster["address"]

    inline = row_of(small.hex())
    assert inline is not None
    assert inline["where"] == "memory"
    assert 100 <= inline["size"] < 100 * 1024
    assert inline["local_refs"] == 1 and inline["borrowers"] == 0

    summary = state.memory_summary()
    assert small.hex() in summary and large_id in summary
    assert "in shared memory" in summary.splitlines()[-1]

    stats = state.object_store_stats()
    assert stats["capacity"] > 0 and stats["objects"] >= 1 and stats["used"] >= LARGE_BYTES

    # The driver lets go: the object lives on for the actor alone.
    del large
    kept = poll_until(lambda: (r := row_of(large_id)) and r["local_refs"] == 0 and r)
    assert kept["borrowers"] == 1
    # ...and once the actor lets go too, it is gone.
    actorflow.get(keeper.drop.remote())
    poll_until(lambda: row_of(large_id) is None, message="the object is freed")


def test_exited_processes_are_skipped(cluster, poll_until):
    ref = actorflow.put(np.zeros(LARGE_BYTES // 8))
    keepers = [Keeper.remote() for _ in range(2)]
    actorflow.get([k.keep.remote([ref]) for k in keepers])
    poll_until(lambda: row_of(ref.hex())["borrowers"] == 2)
    for keeper in keepers:
        actorflow.kill(keeper)
    # Right after the kill the node may still list the workers: they are skipped, not errors.
    assert row_of(ref.hex()) is not None
    poll_until(
        lambda: row_of(ref.hex())["borrowers"] == 0, message="the owner forgets borrowers that died"
    )


def test_spilled_objects(make_cluster, poll_until):
    make_cluster(num_cpus=1, object_store_memory=64 * 1024 * 1024)
    refs = [actorflow.put(np.full(1024 * 1024, i, dtype=np.float64)) for i in range(12)]  # 96 MiB

    def spilled() -> list[dict[str, Any]]:
        return [r for r in state.object_rows() if r["where"] == "spilled"]

    rows = poll_until(spilled, message="some objects are spilled")
    ids = {r.hex() for r in refs}
    assert {r["object_id"] for r in rows} <= ids
    assert all(r["size"] >= 8 * 1024 * 1024 for r in rows)
    stats = state.object_store_stats()
    assert stats["spilled_objects"] == len(spilled()) and stats["spill_count"] >= len(rows)
    assert stats["used"] <= stats["capacity"] == 64 * 1024 * 1024
    assert all(r["where"] in ("shared", "spilled") for r in state.object_rows())
    assert "MiB spilled" in state.memory_summary().splitlines()[-1]
    assert actorflow.get(refs[0])[0] == 0  # a spilled object still reads back


def test_cli_lists_the_drivers_objects(cluster):
    ref = actorflow.put(np.arange(LARGE_BYTES // 8))
    done = run_cli("memory", "--format", "json", session_root=session_root_of(cluster))
    assert done.returncode == 0, done.stderr
    rows = {r["object_id"]: r for r in json.loads(done.stdout)}
    assert rows[ref.hex()]["owner_pid"] == os.getpid()
    assert rows[ref.hex()]["where"] == "shared"
    assert rows[ref.hex()]["local_refs"] == 1


def test_cli_with_an_address_and_token(cluster, tmp_path):
    ref = actorflow.put("hello")
    token = Path(cluster["session_dir"], "token").read_text().strip()
    address = cluster["address"].removeprefix("tcp://")
    done = run_cli(
        "memory", "--address", address, token=token, session_root=str(tmp_path)
    )  # no session there: the token comes from env
    assert done.returncode == 0, done.stderr
    assert ref.hex() in done.stdout
    assert "objects:" in done.stdout.splitlines()[-1]


def test_cli_without_a_cluster(tmp_path):
    done = run_cli("memory", session_root=str(tmp_path / "empty"))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no running actorflow cluster found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_with_a_wrong_token(cluster):
    done = run_cli(
        "memory",
        "--address",
        cluster["address"],
        token="00" * 32,
        session_root=session_root_of(cluster),
    )
    assert done.returncode == 1
    assert "authentication" in done.stderr and "token" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["memory", "--help"])
    assert exit_info.value.code == 0
    assert "--format" in capsys.readouterr().out
    assert cli.main([]) == 2


def test_an_argument_of_a_pending_task_shows_as_pinned(cluster, poll_until):
    import tempfile

    from helpers import touch, wait_for_file

    gate = os.path.join(tempfile.mkdtemp(), "go")
    ref = actorflow.put(np.zeros(50_000))

    @actorflow.remote
    def wait_then_sum(array, gate_path):
        wait_for_file(gate_path)
        return float(array.sum())

    pending = wait_then_sum.remote(ref, gate)

    def pinned() -> int:
        rows = [r for r in state.object_rows() if r["object_id"] == ref.hex()]
        return rows[0]["pinned_by_tasks"] if rows else -1

    assert poll_until(lambda: pinned() == 1, timeout=15)
    touch(gate)
    assert actorflow.get(pending, timeout=30) == 0.0
    assert poll_until(lambda: pinned() == 0, timeout=15)
