"""Starting node processes in the background (``actorflow start``, test clusters, benches).

A node is a detached ``node_main`` process in a session directory: the head's session is new
(with a fresh token, mode 0600); a node that joins a head started on this machine shares its
session (logs, token), and one whose head is elsewhere gets a session of its own for its logs.
A session with a ``tls/`` directory runs TLS: the head's holds the cluster CA it made; a node
whose head is elsewhere gets its certificate from the GCS with the token (enrollment.py).
``start_node`` returns once the node serves, or raises with the end of its log.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from typing import Any

from actorflow._private import errors
from actorflow._private.cluster import enrollment, pki, session_dir
from actorflow._private.config import TOKEN_VARIABLE, Config, env_token


def tcp_address(address: str) -> str:
    """HOST:PORT as tcp://HOST:PORT (an address with a scheme stays as it is)."""
    return address if "://" in address else "tcp://" + address


def cluster_token(
    gcs_address: str, root: str, given: bytes | None = None
) -> tuple[bytes, str | None]:
    """The token of the cluster at gcs_address: given (from --token-file), ACTORFLOW_TOKEN,
    or the token file of its session on this machine; and that session directory (None if
    not on this machine)."""
    found = session_dir.token_for(root, gcs_address)
    given = given if given is not None else env_token()
    if given is not None:
        return given, found[1] if found else None
    if found is None:
        raise errors.NoTokenError(
            f"no token for the cluster at {gcs_address}: no session under {root} belongs to "
            f"it (its head runs on another machine), so set ACTORFLOW_TOKEN to the contents "
            f"of the token file in the head's session directory"
        )
    return found


def resumable_session(session_root: str, gcs_address: str) -> str | None:
    """The session of a head that listened at gcs_address and whose GCS is gone (killed):
    starting a head there again resumes that cluster (its token, its GCS tables)."""
    for path in session_dir.sessions(session_root):
        info = session_dir.read_json(os.path.join(path, "node.json"))
        if (
            info is not None
            and info.get("gcs")
            and info.get("gcs_address") == gcs_address
            and not _is_node_process(int(info.get("pid", 0)))
        ):
            return path
    return None


def _running_head_node(session: str, gcs_address: str) -> dict[str, Any] | None:
    for path in session_dir.node_files(session):
        info = session_dir.read_json(path) or {}
        if (
            info.get("is_head")
            and info.get("gcs_address") == gcs_address
            and _is_node_process(int(info.get("pid", 0)))
        ):
            return info
    return None


def start_gcs(
    *,
    session: str,
    token: bytes,
    host: str,
    port: int,
    storage: str,
    env: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
    timeout: float = 60.0,
    metrics_port: int = 0,
    token_file: str = "",
) -> dict[str, Any]:
    """Start (or restart) the cluster's GCS process (with TLS if its session has it); its
    info."""
    return _spawn(
        [
            *("--gcs", "--host", host, "--port", str(port), "--storage", storage),
            *("--metrics-export-port", str(metrics_port)),
            *_tls_args(session),
        ],
        session=session,
        token=token,
        env=env,
        wrapper=wrapper,
        timeout=timeout,
        what="gcs",
        token_file=token_file,
    )


DASHBOARD_MODULE = "actorflow.dashboard"
NODE_MODULE = "actorflow._private.cluster.node_main"
DEFAULT_DASHBOARD_PORT = 8265  # Ray's


def start_dashboard(
    *,
    session: str,
    token: bytes,
    gcs_address: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    watch_pid: int = 0,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Start the web dashboard of the cluster at gcs_address (a process of its own, which ends
    when the process watch_pid does); its info: url, pid, popen. port None: Ray's 8265, or a
    free one if that is taken."""
    args = ["--gcs-address", gcs_address, "--host", host, "--watch-pid", str(watch_pid)]
    if port is None:
        args += ["--port", str(DEFAULT_DASHBOARD_PORT), "--port-fallback"]
    else:
        args += ["--port", str(port)]
    return _spawn(
        args,
        session=session,
        token=token,
        env=env,
        wrapper=None,
        timeout=timeout,
        what="dashboard",
        module=DASHBOARD_MODULE,
    )


def start_node(
    *,
    head: bool,
    address: str = "",
    host: str = "127.0.0.1",
    port: int = 0,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int = 0,
    storage: str = "",
    metrics_export_port: int = 0,
    session_root: str,
    env: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
    timeout: float = 60.0,
    tls: bool | None = None,
    token_file: str = "",
    drain_grace_seconds: float = 0.0,
    gcs_metrics_port: int = 0,
    dashboard: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start a node process and wait until it serves; its info (with "pid", "log_path" and
    "popen"). With head, first the cluster's GCS on host:port (its info under "gcs"): a new
    session with a new token, or, if a head with a GCS now gone listened at that address, its
    session again (same token and storage, tables reloaded); then if that head's node still
    runs, its info comes back with "resumed" and no new node is started. tls (default:
    ACTORFLOW_TLS) makes a new head's cluster run TLS, and has a node joining a TLS cluster
    from another machine get its certificate; a resumed session keeps what it was.
    token_file: the cluster's token is in that file (hex), which the processes read (it is
    never put in their environment); drain_grace_seconds: on SIGTERM the node drains first
    (node_main). ``dashboard`` (with head): start the web dashboard too, with
    these keyword arguments of start_dashboard (host, port); its info under "dashboard"."""
    given = session_dir.read_token_file(token_file) if token_file else None
    gcs_info = None
    if head:
        found = resumable_session(session_root, f"tcp://{host}:{port}") if port else None
        session = found or session_dir.create(session_root)
        token = session_dir.read_token(session) if found else None
        if given is not None and token != given:
            token = given
            session_dir.write_token(session, token)
        if token is None:
            token = env_token() or secrets.token_bytes(32)
            session_dir.write_token(session, token)
            if tls if tls is not None else Config.from_env().tls:
                pki.create_head_dir(os.path.join(session, pki.TLS_DIR))
        before = session_dir.read_json(os.path.join(session, "node.json")) if found else None
        storage = (
            storage
            or (before or {}).get("storage")
            or Config.from_env().gcs_storage
            or f"sqlite:///{os.path.join(session, 'gcs.sqlite')}"
        )
        gcs_info = start_gcs(
            session=session,
            token=token,
            host=host,
            port=port,
            storage=storage,
            env=env,
            wrapper=wrapper,
            timeout=timeout,
            metrics_port=gcs_metrics_port,
            token_file=token_file,
        )
        address = gcs_info["gcs_address"]
        head_node = _running_head_node(session, address) if found else None
        if head_node is not None:  # only the GCS had died: the head's node reconnects to it
            resumed = dict(head_node, gcs=gcs_info, resumed=True, popen=None, log_path="")
            if dashboard is not None:
                resumed["dashboard"] = _start_head_dashboard(session, token, gcs_info, dashboard)
            return resumed
    else:
        if not address:
            raise ValueError("a node that is not the head needs the head's address")
        address = tcp_address(address)
        token, found = cluster_token(address, session_root, given)
        # A node whose head is on another machine keeps its logs in a session of its own,
        # which does not become "the latest session" (that one's token is another cluster's).
        session = found or session_dir.create(session_root, link_latest=False)
        if found is None:
            session_dir.write_token(session, token)
        if enrollment.session_tls_dir(session) is None and (
            tls if tls is not None else Config.from_env().tls
        ):
            _enroll_node(address, token, session, timeout)
    args = [
        "--host",
        host,
        "--port",
        "0",
        "--address",
        address,
        "--resources",
        json.dumps(resources or {}),
        "--metrics-export-port",
        str(metrics_export_port),
        *_tls_args(session),
    ]
    if drain_grace_seconds > 0:
        args += ["--drain-grace-seconds", str(drain_grace_seconds)]
    if head:
        args.append("--head")
    if num_cpus is not None:
        args += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        args += ["--num-gpus", str(num_gpus)]
    if object_store_memory:
        args += ["--object-store-memory", str(object_store_memory)]
    try:
        info = _spawn(
            args,
            session=session,
            token=token,
            env=env,
            wrapper=wrapper,
            timeout=timeout,
            what="node",
            token_file=token_file,
        )
    except BaseException:
        if gcs_info is not None:
            gcs_info["popen"].kill()
            gcs_info["popen"].wait()
        raise
    info["gcs"] = gcs_info
    if head and dashboard is not None:
        assert gcs_info is not None
        try:
            info["dashboard"] = _start_head_dashboard(session, token, gcs_info, dashboard)
        except BaseException:
            for process in (info["popen"], gcs_info["popen"]):
                process.kill()
                process.wait()
            raise
    return info


def _tls_args(session: str) -> list[str]:
    directory = enrollment.session_tls_dir(session)
    return ["--tls-dir", directory] if directory else []


def _enroll_node(address: str, token: bytes, session: str, timeout: float) -> None:
    """A certificate for a node whose head is elsewhere, into its session's TLS directory."""
    import asyncio

    try:
        key, cert, ca = asyncio.run(
            enrollment.enroll(address, token, min(timeout, 30.0), name="node")
        )
    except (errors.AuthenticationError, OSError, ValueError) as exc:
        raise errors.NodeStartError(f"no TLS certificate from {address}: {exc}") from None
    pki.write_member(os.path.join(session, pki.TLS_DIR), key, cert, ca)


def _start_head_dashboard(
    session: str, token: bytes, gcs_info: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """The head's dashboard: it ends with the GCS process."""
    return start_dashboard(
        session=session,
        token=token,
        gcs_address=gcs_info["gcs_address"],
        watch_pid=int(gcs_info["pid"]),
        **options,
    )


def _spawn(
    args: list[str],
    *,
    session: str,
    token: bytes,
    env: dict[str, str] | None,
    wrapper: list[str] | None,
    timeout: float,
    what: str,
    token_file: str = "",
    module: str = NODE_MODULE,
) -> dict[str, Any]:
    """Run node_main (or module) with args in the background; wait for its ready file. The
    token goes in its environment, or, given token_file, the process reads it from there."""
    stamp = f"{time.strftime('%H%M%S')}-{os.urandom(3).hex()}"
    ready = os.path.join(session, f".ready-{stamp}.json")
    log_path = os.path.join(session, "logs", f"{what}-{stamp}.log")
    command = [
        *(wrapper or []),
        sys.executable,
        "-m",
        module,
        "--session-dir",
        session,
        "--ready-file",
        ready,
        "--log-path",
        log_path,
        *args,
    ]
    full_env = dict(os.environ)
    full_env.update(env or {})
    if token_file:
        command += ["--token-file", os.path.abspath(token_file)]
        full_env.pop(TOKEN_VARIABLE, None)
    else:
        full_env[TOKEN_VARIABLE] = token.hex()  # not on the command line, where ps shows it
    full_env["ACTORFLOW_SESSION_ROOT"] = os.path.dirname(session)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=full_env,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        info = session_dir.read_json(ready)
        if info is not None:
            os.unlink(ready)
            if "error" in info:
                process.wait()
                raise errors.NodeStartError(
                    f"the {what} could not start: {info['error']}{_log_tail(log_path)}"
                )
            info.update(log_path=log_path, popen=process)
            return info
        code = process.poll()
        if code is not None:
            raise errors.NodeStartError(
                f"the {what} process exited with code {code} before it served{_log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise errors.NodeStartError(
                f"the {what} did not start within {timeout:g} s{_log_tail(log_path)}"
            )
        time.sleep(0.02)


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            tail = f.readlines()[-lines:]
    except OSError:
        return ""
    return f"; the end of its log ({path}):\n" + "".join(tail) if tail else f" (log: {path})"


def _is_node_process(pid: int) -> bool:
    """Is pid still one of our node (or dashboard) processes (and not a reused pid)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            arguments = f.read().split(b"\0")
        return (
            any(m.encode() in arguments for m in (NODE_MODULE, DASHBOARD_MODULE))
            and os.stat(f"/proc/{pid}").st_uid == os.getuid()
        )
    except OSError:
        return False


def stop_dashboards(session_root: str, grace: float = 5.0) -> list[int]:
    """End every dashboard process started under session_root (SIGTERM, then SIGKILL after
    grace); the pids that were running."""
    pids = []
    for session in session_dir.sessions(session_root):
        info = session_dir.read_json(os.path.join(session, "dashboard.json")) or {}
        pid = int(info.get("pid", 0))
        if pid > 0 and _is_node_process(pid):
            pids.append(pid)
    return _terminate(pids, grace)


def stop_nodes(session_root: str, grace: float = 5.0) -> list[int]:
    """End every node process started under session_root (SIGTERM, then SIGKILL after grace);
    their workers end with them. Returns the pids that were running."""
    pids = []
    for session in session_dir.sessions(session_root):
        for path in session_dir.node_files(session):
            info = session_dir.read_json(path) or {}
            pid = int(info.get("pid", 0))
            if pid > 0 and _is_node_process(pid):
                pids.append(pid)
            else:
                try:
                    os.unlink(path)  # a node that ended without cleaning up
                except OSError:
                    pass
    return _terminate(pids, grace)


def _terminate(pids: list[int], grace: float) -> list[int]:
    """SIGTERM each of our processes, then SIGKILL those still running after grace."""
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_is_node_process(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _is_node_process(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids
