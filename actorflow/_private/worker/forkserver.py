"""The fork server: a single-threaded process that has imported the worker's code and forks a
new worker on request, so a worker starts in milliseconds instead of a fresh interpreter's
~150 ms of imports.

Protocol, one JSON object per line: the node writes ``{"worker_id", "log_path", "spec_path"}``
to our stdin (the child reads its WorkerSpec from spec_path, as a spawned worker does); we answer
``{"worker_id", "pid"}`` on stdout, and ``{"exited": pid, "code": N}`` when a worker we forked
ends (negative N: killed by signal -N, as in subprocess). The fork server dies with the node
(parent-death signal, and end of its stdin).

It never starts a thread or an event loop before forking: forking a threaded process is unsafe.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys

from actorflow._private.config import env_parent_pid


def _child(command: dict) -> None:
    """In the forked child: become a worker."""
    os.setsid()  # a Ctrl-C in the driver's terminal is for the driver
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(command["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    # (The random module reseeds itself in forked children: CPython registers that at fork.)
    from actorflow._private.worker import main as worker_main

    try:
        worker_main.main(["--spec", command["spec_path"], "--forked"])
    finally:
        os._exit(0)


def _reap(out: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        os.write(out, (json.dumps({"exited": pid, "code": code}) + "\n").encode())


def serve() -> None:
    from actorflow._private.worker.main import die_with_parent

    # The node that started us (also the mark by which tests find a cluster's processes).
    die_with_parent(env_parent_pid())
    # Import what every worker needs once, here, so that forked children start warm: the
    # worker's code, and the public package that the user code they unpickle imports (loaded
    # by name: a warm-up, not a dependency of this module).
    from actorflow._private.worker import main  # noqa: F401

    importlib.import_module("actorflow")

    out = sys.stdout.fileno()
    inp = sys.stdin.fileno()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    # SIGCHLD only pokes the select loop; reaping happens in the loop, not in the handler.
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    buffered = b""
    while True:
        try:
            ready, _, _ = select.select([inp, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(out)
        if inp not in ready:
            continue
        chunk = os.read(inp, 65536)
        if not chunk:  # the node is gone
            os._exit(0)
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            command = json.loads(line)
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                os.close(wake_r)
                os.close(wake_w)
                _child(command)
            os.write(
                out, (json.dumps({"worker_id": command["worker_id"], "pid": pid}) + "\n").encode()
            )
        _reap(out)


if __name__ == "__main__":
    serve()
