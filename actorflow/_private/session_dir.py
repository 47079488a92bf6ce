"""The session directory: logs and the cluster token, readable by this user only."""

from __future__ import annotations

import json
import os
import time


def create(root: str) -> str:
    os.makedirs(root, mode=0o700, exist_ok=True)
    # The random part: one process may start several sessions within a second.
    name = time.strftime("session_%Y-%m-%d_%H-%M-%S") + f"_{os.getpid()}_{os.urandom(3).hex()}"
    path = os.path.join(root, name)
    os.mkdir(path, 0o700)
    os.mkdir(os.path.join(path, "logs"), 0o700)
    os.chmod(path, 0o700)  # whatever the umask: the token lives here
    latest = os.path.join(root, "session_latest")
    try:
        if os.path.islink(latest):
            os.unlink(latest)
        os.symlink(path, latest)
    except OSError:
        pass  # another session raced us to the link; it is only a convenience
    return path


def write_token(session_dir: str, token: bytes) -> str:
    path = os.path.join(session_dir, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token.hex())
    return path


def write_node_info(session_dir: str, info: dict) -> str:
    """Where the session's node listens, for tools on this machine (``actorflow memory``)."""
    path = os.path.join(session_dir, "node.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    return path
