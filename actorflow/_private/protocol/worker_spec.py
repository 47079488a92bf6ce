"""What a worker process needs to start: one typed, frozen spec, written by its node.

The node's worker pool writes the spec (msgpack) to a file of its own in the node's session
directory (mode 0700), readable by this user only (0600); the worker is told the file's path
(``--spec PATH``), reads it once and unlinks it. So the cluster token is on no command line and in
no environment: user code, and the processes it starts, never see it. Spawned and forked workers
(worker/forkserver.py) receive their spec the same way.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs published

from actorflow._private.config import Config
from actorflow._private.errors import MalformedMessageError

# Bumped when the fields change: a worker and its node always run the same code, but a stale file
# from another version should fail clearly rather than half-work.
SPEC_VERSION = 3


class MalformedWorkerSpecError(MalformedMessageError):
    """A worker spec could not be read: not msgpack, or a field missing or of the wrong type."""


@dataclass(frozen=True)
class WorkerSpec:
    # -- the node the worker belongs to --
    node_id: str
    # The node's own interface: the worker listens there, so that peers on other machines can
    # reach it ("" means 127.0.0.1).
    node_host: str
    raylet_address: str  # tcp://HOST:PORT of the node's raylet; the worker registers there
    gcs_address: str
    session_dir: str
    shm_prefix: str  # names of the node's shared-memory segments ("" without a store)
    spill_dir: str  # where the node's store spills objects ("" without a store)
    # The unix socket the node's store hands out segments' fds on ("" without a store).
    segment_socket: str
    token: bytes = field(repr=False)  # the cluster token (kept out of reprs and logs)
    # The node's TLS directory (ca.pem, cert.pem, key.pem) when its cluster runs with TLS:
    # the worker speaks TLS with the node's certificate ("" plaintext).
    tls_dir: str = ""
    # The node's configuration: the worker uses the same tunables as its node.
    config: Config = field(default_factory=Config)
    # -- this worker --
    worker_id: str = ""
    # The process the worker must not outlive (its raylet's node, or the fork server that forked
    # it); 0: do not check.
    parent_pid: int = 0
    # -- its job (empty for a worker started before any job is known) --
    job_id: str = ""
    namespace: str = ""
    log_address: str = ""  # where the worker forwards what it prints ("" not forwarded)
    sys_path: tuple[str, ...] = ()  # the driver's import path, put before the worker's own
    # -- its runtime_env (empty for none), as its node set it up (runtime_env/agent.py) --
    runtime_env: dict = field(default_factory=dict)  # the env's wire form (inherited by children)
    env_vars: dict = field(default_factory=dict)  # set before any user code runs
    working_dir: str = ""  # the worker's cwd, first on its import path
    env_sys_path: tuple[str, ...] = ()  # working_dir and py_modules: before the job's path
    python: str = ""  # the interpreter of the env's virtualenv ("" the node's own)

    def replace(self, **changes: Any) -> WorkerSpec:
        return dataclasses.replace(self, **changes)

    def to_bytes(self) -> bytes:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["config"] = dataclasses.asdict(self.config)
        values["sys_path"] = list(self.sys_path)
        values["env_sys_path"] = list(self.env_sys_path)
        return msgpack.packb({"version": SPEC_VERSION, "spec": values}, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkerSpec:
        """The spec encoded in data; MalformedWorkerSpecError naming what is wrong otherwise."""
        try:
            message = msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise MalformedWorkerSpecError(f"malformed worker spec: not msgpack ({exc})") from None
        if not isinstance(message, dict) or "spec" not in message:
            raise MalformedWorkerSpecError(
                f"malformed worker spec: expected a map with 'version' and 'spec', "
                f"got {type(message).__name__}"
            )
        if message.get("version") != SPEC_VERSION:
            raise MalformedWorkerSpecError(
                f"malformed worker spec: version {message.get('version')!r}, this worker "
                f"reads version {SPEC_VERSION}"
            )
        values = message["spec"]
        if not isinstance(values, dict):
            raise MalformedWorkerSpecError("malformed worker spec: 'spec' is not a map")
        return cls._from_values(values)

    @classmethod
    def _from_values(cls, values: dict[str, Any]) -> WorkerSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MalformedWorkerSpecError(
                f"malformed worker spec: unknown field(s) {', '.join(unknown)}"
            )
        required = [f.name for f in fields(cls) if _is_required(f)]
        missing = [name for name in required if name not in values]
        if missing:
            raise MalformedWorkerSpecError(
                f"malformed worker spec: missing field(s) {', '.join(missing)}"
            )
        changes = dict(values)
        for name, value in values.items():
            expected = _FIELD_TYPES[name]
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise MalformedWorkerSpecError(
                    f"malformed worker spec: {name} should be {expected.__name__}, "
                    f"got {type(value).__name__}"
                )
        for name in ("sys_path", "env_sys_path"):
            if name in values:
                if not all(isinstance(p, str) for p in values[name]):
                    raise MalformedWorkerSpecError(f"malformed worker spec: {name} holds a non-str")
                changes[name] = tuple(values[name])
        if "config" in values:
            try:
                changes["config"] = Config.from_dict(values["config"])
            except ValueError as exc:
                raise MalformedWorkerSpecError(f"malformed worker spec: {exc}") from None
        return cls(**changes)

    def write(self, path: str) -> None:
        """Write to a new file at path, readable by this user only."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def consume(cls, path: str) -> WorkerSpec:
        """Read the spec at path and unlink the file: the token is not left lying around."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        return cls.from_bytes(data)


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


# The types a decoded field must have (msgpack gives lists for tuples and maps for Config).
_FIELD_TYPES: dict[str, type] = {
    "node_id": str,
    "node_host": str,
    "raylet_address": str,
    "gcs_address": str,
    "session_dir": str,
    "shm_prefix": str,
    "spill_dir": str,
    "segment_socket": str,
    "token": bytes,
    "tls_dir": str,
    "config": dict,
    "worker_id": str,
    "parent_pid": int,
    "job_id": str,
    "namespace": str,
    "log_address": str,
    "sys_path": list,
    "runtime_env": dict,
    "env_vars": dict,
    "working_dir": str,
    "env_sys_path": list,
    "python": str,
}
assert set(_FIELD_TYPES) == {f.name for f in fields(WorkerSpec)}
