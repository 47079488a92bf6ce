"""The session directory: logs and the cluster token, readable by this user only."""

from __future__ import annotations

import json
import os
import time


def create(root: str, link_latest: bool = True) -> str:
    os.makedirs(root, mode=0o700, exist_ok=True)
    # The random part: one process may start several sessions within a second.
    name = time.strftime("session_%Y-%m-%d_%H-%M-%S") + f"_{os.getpid()}_{os.urandom(3).hex()}"
    path = os.path.join(root, name)
    os.mkdir(path, 0o700)
    os.mkdir(os.path.join(path, "logs"), 0o700)
    os.chmod(path, 0o700)  # whatever the umask: the token lives here
    if not link_latest:
        return path
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


def write_json(path: str, info: dict) -> str:
    """Write atomically (readers poll for these files) and for this user only."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(temp, path)
    return path


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_token(session_dir: str) -> bytes | None:
    try:
        with open(os.path.join(session_dir, "token")) as f:
            return bytes.fromhex(f.read().strip())
    except (OSError, ValueError):
        return None


def sessions(root: str) -> list[str]:
    """Every session directory under root, newest first."""
    try:
        names = [n for n in os.listdir(root) if n.startswith("session_") and n != "session_latest"]
    except OSError:
        return []
    paths = [os.path.join(root, n) for n in names]
    return sorted((p for p in paths if os.path.isdir(p)), key=os.path.getmtime, reverse=True)


def node_files(session_dir: str) -> list[str]:
    """The info files of the node processes started in this session (``nodes/<id>.json``)."""
    folder = os.path.join(session_dir, "nodes")
    try:
        return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".json")]
    except OSError:
        return []


def session_of_cluster(root: str, gcs_address: str) -> str | None:
    """The newest session on this machine whose head (still running) listens at gcs_address:
    a dead session's port may be reused by another cluster."""
    for path in sessions(root):
        info = read_json(os.path.join(path, "node.json"))
        if (
            info is not None
            and info.get("gcs_address") == gcs_address
            and pid_running(int(info.get("pid", 0)))
        ):
            return path
    return None


def pid_running(pid: int) -> bool:
    """Does a process with this pid exist (ours or another user's)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, as another user's
    return True


def token_for(root: str, gcs_address: str) -> tuple[bytes, str] | None:
    """The token of the cluster at gcs_address from a session on this machine, and that
    session: the head's (its node.json names that GCS), else one of a node that joined it (its
    nodes/*.json name that GCS, and the node runs), newest first."""
    head = session_of_cluster(root, gcs_address)
    token = read_token(head) if head else None
    if head is not None and token is not None:
        return token, head
    for path in sessions(root):
        for node_file in node_files(path):
            info = read_json(node_file) or {}
            if info.get("gcs_address") == gcs_address and pid_running(int(info.get("pid", 0))):
                token = read_token(path)
                if token is not None:
                    return token, path
    return None


def read_token_file(path: str) -> bytes:
    """The cluster token in a file (hex, as in a session directory's token file): a clear
    error when the file is missing, empty or not hex."""
    try:
        with open(path) as f:
            raw = f.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not raw:
        raise ValueError(f"the token file {path} is empty")
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise ValueError(
            f"the token file {path} does not hold a hex string (the cluster token, e.g. "
            f"from `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        ) from None
