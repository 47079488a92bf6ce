"""Running one script or one pytest file in its own process group, with a deadline, and ending
everything it started afterwards (by pid: its group, and every descendant seen while it ran,
since Ray and actorflow start daemons that may leave the group)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

# How often the descendants of a running command are noted.
_SNAPSHOT_INTERVAL_S = 0.5
# After SIGTERM, how long a process gets before SIGKILL.
_TERM_GRACE_S = 3.0


@dataclass
class Finished:
    returncode: int | None  # None: ended at the deadline
    seconds: float
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time in clock ticks, state) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def _descendants(pid: int) -> dict[int, int]:
    """pid -> start time of every live descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                children.setdefault(info[0], []).append(int(entry))
                started[int(entry)] = info[1]
    found: dict[int, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found[child] = started[child]
            todo.extend(children.get(child, []))
    return found


def _same_alive(pid: int, started: int) -> bool:
    info = _stat(pid)
    return info is not None and info[1] == started and info[2] != "Z"


def end_processes(seen: dict[int, int]) -> list[int]:
    """SIGTERM, then SIGKILL, the processes in ``seen`` that still run (the same process: its
    start time must match, so a reused pid is left alone). Returns the pids that had to be
    ended."""
    alive = [pid for pid, started in seen.items() if _same_alive(pid, started)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            if _same_alive(pid, seen[pid]):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + _TERM_GRACE_S
        while time.monotonic() < deadline and any(_same_alive(p, seen[p]) for p in alive):
            time.sleep(0.05)
    return alive


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL whatever is left of it after the grace period."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + _TERM_GRACE_S
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or its zombie keeps the group alive
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def run(
    argv: list[str],
    *,
    timeout: float,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdout_path: str,
    stderr_path: str,
) -> Finished:
    """Run ``argv`` in a new session (its own process group) until it exits or ``timeout``
    seconds pass; then end its group and every descendant noted while it ran. Output goes to
    the two files (and is returned)."""
    start = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        seen: dict[int, int] = {}
        returncode: int | None = None
        while True:
            seen.update(_descendants(proc.pid))
            try:
                returncode = proc.wait(timeout=_SNAPSHOT_INTERVAL_S)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - start > timeout:
                    break
        seconds = time.monotonic() - start
        _end_group(proc)
        proc.wait()
        end_processes(seen)
    with open(stdout_path, errors="replace") as out, open(stderr_path, errors="replace") as err:
        return Finished(returncode, seconds, out.read(), err.read())


def last_error_line(text: str) -> str:
    """The final line of the last traceback in ``text`` (the exception and its message), else
    its last non-empty line."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if starts:
        block = lines[starts[-1] + 1 :]
        unindented = [line for line in block if line.strip() and not line[0].isspace()]
        if unindented:
            return unindented[0][:300]
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:300]
    return ""


def base_env(python: str, alias_dirs: list[str], extra_path: list[str]) -> dict[str, str]:
    """The environment for a run: this one, with the interpreter's bin directory first on PATH
    (so its own CLI is found), and PYTHONPATH = the alias directories (if any) then
    ``extra_path``; no RAY_ADDRESS, so every run starts its own local cluster."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.pop("ACTORFLOW_ADDRESS", None)
    bin_dir = os.path.dirname(os.path.abspath(python))
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(alias_dirs + extra_path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def private_ray_tmpdir(env: dict[str, str]) -> Iterator[str]:
    """A temp root of its own for one run (RAY_TMPDIR in ``env``), removed after. Ray's
    ``init()`` without an address joins the cluster named in <temp root>/ray/ray_current_cluster,
    which any other Ray user on the machine writes (``ray start``, ``cluster_utils.Cluster``):
    with the shared /tmp a run could land on someone else's cluster. Short, under /tmp, since
    Ray's socket paths below it must fit in a Unix socket address."""
    path = tempfile.mkdtemp(prefix="cr-", dir="/tmp")
    env["RAY_TMPDIR"] = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
