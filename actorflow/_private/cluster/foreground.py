"""``actorflow start --block``: stay in the foreground with the node (and the head's GCS), as
orchestrators (Kubernetes, systemd) expect of a container's or a unit's main process.

SIGTERM or SIGINT is passed on to the node, which drains (node_main, Raylet.drain) and exits; a
head's GCS is stopped after its node. The exit code says how it ended: 0 after a drain that was
asked for; the node's own non-zero code (128 + signal when it was killed) when the node died;
1 when the GCS died or the node ended without being asked.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

_POLL_SECONDS = 0.1


def exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it: 128 + N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _stop(process: subprocess.Popen, grace: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def block(info: dict[str, Any], drain_grace_seconds: float, out: Any = None) -> int:
    """Wait on the node started with info (and its GCS, for a head) until it ends or this
    process is told to stop; the exit code (module docstring)."""
    out = out or sys.stderr
    node: subprocess.Popen | None = info.get("popen")
    gcs: subprocess.Popen | None = (info.get("gcs") or {}).get("popen")
    if node is None:
        print("actorflow start --block: the node was not started by this process", file=out)
        return 1
    asked: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if not asked:
            asked.append(signum)
            node.send_signal(signal.SIGTERM)  # the node drains, then exits

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            code = node.poll()
            if code is not None:
                break
            if gcs is not None and gcs.poll() is not None:
                print(
                    f"actorflow start --block: the GCS (pid {gcs.pid}) exited with code "
                    f"{gcs.returncode}; stopping the head's node",
                    file=out,
                )
                _stop(node, drain_grace_seconds + 5)
                return 1
            time.sleep(_POLL_SECONDS)
        if gcs is not None:
            _stop(gcs, 10)
        if asked:
            print(f"actorflow start --block: the node drained and exited (code {code})", file=out)
            return exit_code(code)
        print(
            f"actorflow start --block: the node (pid {node.pid}) died: exit code {code} "
            f"(see its log, {info.get('log_path', '')})",
            file=out,
        )
        return exit_code(code) or 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
