"""The one configuration object: a frozen dataclass with ``ACTORFLOW_*`` environment overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

from actorflow._private import errors

# The two variables that are not Config fields: where the cluster is, and its secret. Each is read
# here only.
ADDRESS_VARIABLE = "ACTORFLOW_ADDRESS"
TOKEN_VARIABLE = "ACTORFLOW_TOKEN"
# The path of a file holding the token (a mounted Kubernetes Secret), when ACTORFLOW_TOKEN is unset.
TOKEN_FILE_VARIABLE = "ACTORFLOW_TOKEN_FILE"
PARENT_PID_VARIABLE = "ACTORFLOW_PARENT_PID"


def env_address() -> str:
    """ACTORFLOW_ADDRESS (as RAY_ADDRESS): the cluster a driver joins; "" if unset."""
    return os.environ.get(ADDRESS_VARIABLE, "")


def env_parent_pid() -> int:
    """The pid of the node that started this process (0 if none): set in the environment of
    the fork server and of every worker, it dies with that node, and tests find a cluster's
    processes by it."""
    return int(os.environ.get(PARENT_PID_VARIABLE) or 0)


def env_token(*, consume: bool = False) -> bytes | None:
    """The cluster token given in ACTORFLOW_TOKEN (hex), else in the file ACTORFLOW_TOKEN_FILE
    names (a mounted Secret); None if neither is set. consume: also remove ACTORFLOW_TOKEN from
    this process's environment, so that no child inherits it."""
    raw = os.environ.pop(TOKEN_VARIABLE, "") if consume else os.environ.get(TOKEN_VARIABLE, "")
    raw = raw.strip()
    path = os.environ.get(TOKEN_FILE_VARIABLE, "").strip()
    if not raw and path:
        try:
            with open(path) as f:
                raw = f.read().strip()
        except OSError as exc:
            raise errors.AuthenticationError(
                f"{TOKEN_FILE_VARIABLE}={path}: cannot read the token file ({exc.strerror})"
            ) from None
    if not raw:
        return None
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise errors.AuthenticationError(
            f"{TOKEN_VARIABLE} is not a hex string: give the cluster's token as written in "
            "the token file of its head's session directory"
        ) from None


@dataclass(frozen=True)
class Config:
    # Values at or below this many bytes travel inline with their owner; larger ones go to the
    # node's object store once it exists (the seam is serialization.is_inline).
    inline_object_max_bytes: int = 100 * 1024
    # Bytes of shared memory the node's object store may use; 0: 30% of RAM (bounded by the
    # size of /dev/shm where segments must be files there, without memfd). When full, objects
    # are spilled to object_spilling_directory (default: the session directory's spill/).
    object_store_memory: int = 0
    object_spilling_directory: str = ""
    # The share of a node's RAM it offers as the ``memory`` resource (tasks and actors ask for
    # it with memory=...), as Ray does; nothing enforces it at run time.
    memory_resource_fraction: float = 0.7
    # How long an actor that exits on purpose (exit_actor, __ray_terminate__) waits for the
    # user's atexit handlers before its process ends.
    actor_exit_handlers_seconds: float = 5.0
    # Refuse get/wait/next on a thread running an asyncio loop (AsyncioContextError) instead of
    # blocking it with a warning, as Ray does by default.
    strict_asyncio_blocking: bool = False
    # Largest frame a connection accepts; bigger messages are refused with a clear error.
    max_frame_size: int = 512 * 1024 * 1024
    # How long an idle task lease is kept before it goes back to the raylet. Keeping it briefly
    # saves a raylet round trip per task for a caller that submits one task at a time.
    lease_idle_seconds: float = 0.05
    # Tasks whose function usually runs faster than this are pipelined several to a worker.
    pipeline_short_task_seconds: float = 0.002
    pipeline_depth: int = 16
    # Outstanding lease requests one caller keeps per resource shape.
    max_pending_lease_requests: int = 8
    # Task workers a node may run at most (beyond its CPUs: blocked tasks, zero-CPU tasks);
    # actors are not counted, each has a worker of its own.
    max_workers_per_node: int = 64
    # An idle worker above the pre-started count exits after this long.
    idle_worker_seconds: float = 10.0
    # How long a new worker process may take to register before it is counted as failed.
    worker_register_timeout: float = 30.0
    connect_timeout: float = 10.0
    # TLS on every tcp connection (ACTORFLOW_TLS=1): a driver or node joining a cluster started
    # with `actorflow start --head --tls` gets its certificate from the head with the token.
    tls: bool = False
    # Nodes report to the GCS this often; one silent for node_timeout_seconds is marked dead
    # (its actors restart elsewhere, its tasks are retried, it is told to exit if it returns).
    heartbeat_seconds: float = 0.5
    node_timeout_seconds: float = 10.0
    # How long processes keep trying to reach a GCS that went away (a head being restarted)
    # before they give up on what they were asking it.
    gcs_reconnect_seconds: float = 60.0
    # Where a head started by `actorflow start --head` keeps the GCS's tables: "" is
    # <session>/gcs.sqlite; or sqlite:///PATH, or redis://HOST:PORT/DB.
    gcs_storage: str = ""
    default_max_retries: int = 3
    # -- lost objects (ownership/lineage.py, worker/recovery.py) --
    # Owners keep the specs of their tasks while their results are referenced, to re-run a task
    # when every copy of a result is lost (Ray's lineage_pinning_enabled); at most this many
    # bytes of them per owner (Ray's max_lineage_bytes), the oldest evicted first.
    lineage_pinning_enabled: bool = True
    max_lineage_bytes: int = 1 << 30
    session_root: str = "/tmp/actorflow-sessions"  # not importable: cannot shadow the package
    # Fork workers from a pre-imported template process (milliseconds) instead of starting a
    # fresh interpreter for each (about 150 ms).
    use_forkserver: bool = True
    # Forward worker print/logging output to the driver's terminal.
    log_to_driver: bool = True
    # Hooks each worker calls at start, "module:function" separated by commas; each is called
    # with (core_worker, executor).
    worker_extensions: str = ""

    # -- object transfer between nodes (node/transfer.py) --
    # Measured on 2 cores, 1 GiB over loopback: 4-16 MiB chunks and windows of 4-8 all give about
    # 1.3-1.4 GB/s (2 MiB: 0.9, 32 MiB: 0.3, once chunk buffers are kept on the heap).
    transfer_chunk_bytes: int = 8 << 20  # bytes per read_chunk answer
    # Chunk requests in flight per transfer: at most window x chunk bytes are buffered.
    transfer_window: int = 4
    # How long a source waits for an object its writer has not sealed yet.
    transfer_seal_wait_seconds: float = 10.0
    # No chunk (or no streamed byte) for this long: the source is taken for gone.
    transfer_chunk_timeout_seconds: float = 60.0
    # Objects of at least this many bytes are streamed into the target segment over a
    # connection of their own (node/transfer_stream.py), smaller ones go in chunks (a new
    # connection, with TLS a handshake, costs more than their copies).
    transfer_stream_min_bytes: int = 1 << 20
    # -- the node's object store (node/object_store.py) --
    # Pooled shared-memory segments unused for this long are unlinked.
    store_pool_idle_seconds: float = 10.0
    # How long a full store waits for readers to let go of mappings before it spills.
    store_readers_timeout: float = 5.0
    # -- runtime environments (runtime_env/) --
    # How long a node may take to set up a runtime_env (pip, packages) when its config does not
    # say (Ray's default, RuntimeEnvConfig.setup_timeout_seconds).
    runtime_env_setup_timeout_seconds: float = 600.0
    # The largest working_dir or py_modules package, zipped (Ray's limit is of this order).
    runtime_env_max_package_bytes: int = 500 * 1024 * 1024
    # Packages travel to the GCS and to nodes in pieces of this size (no frame holds a whole one).
    runtime_env_chunk_bytes: int = 4 * 1024 * 1024
    # -- the GCS --
    actor_history: int = 64  # state changes kept per actor for watchers that fall behind
    # Pending placement groups are tried again this often, besides whenever a node joins or
    # reports, or a group is removed.
    placement_group_retry_seconds: float = 0.5
    # How long a raylet may take to answer the prepare phase of a reservation before the
    # attempt is given up (and tried again).
    placement_group_prepare_timeout: float = 10.0
    # -- task events (worker/task_events.py, control/task_events.py) --
    # Every task and actor call records its life in its owner, which reports it to the GCS in
    # batches (``actorflow list tasks``, ``timeline``); off turns them off for every call.
    task_events_enabled: bool = True
    # Events an owner buffers between reports; beyond that, events are dropped and counted.
    task_events_buffer_size: int = 100_000
    # An owner reports its events this often, or as soon as this many are buffered.
    task_events_report_seconds: float = 1.0
    task_events_batch_size: int = 10_000
    # Task attempts the GCS keeps per job; the oldest are evicted first (and counted).
    task_events_max_per_job: int = 100_000
    # -- cluster inspection (actorflow memory / list / status, util.state) --
    # How long one process may take to answer an inspection query before it is skipped.
    inspection_request_timeout: float = 10.0
    # -- metrics (metrics/, node/metrics.py) --
    # How often a process reports its metrics (user metrics, calls by state, sampled request
    # latencies) to its node, when something changed; 0 turns the reports off.
    metrics_report_seconds: float = 1.0
    # The port of /metrics for the embedded cluster of init() (0: a free one; -1: none unless
    # init(_metrics_export_port=...) asks). Node processes take `--metrics-export-port`.
    metrics_export_port: int = -1
    # -- worker internals --
    # How long a process keeps refs it sent inside a result alive, if the receiver never says
    # that it holds them (it died): a safety net, not the normal path.
    in_flight_seconds: float = 60.0
    # How long a caller waits to learn why an actor's process went away.
    actor_fate_timeout: float = 10.0
    # How long after an actor handle's last borrower lets go its actor is checked for collection.
    handle_grace_seconds: float = 1.0
    # How often a process sweeps shared-memory mappings no value is built on any more.
    mapping_sweep_seconds: float = 1.0
    # Writable mappings of pooled segments a process keeps for its next writes.
    write_mappings_kept: int = 4
    # Fds of the node's segments a process keeps (mapping one again is then one lookup).
    segment_fds_kept: int = 64

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """A Config from plain values (as dataclasses.asdict gives them); ValueError naming the
        field that is unknown or of the wrong type."""
        by_name = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ValueError(f"unknown Config field(s) {', '.join(unknown)}")
        for name, value in values.items():
            kind: Any = type(by_name[name].default)
            fits = isinstance(value, kind) and (kind is bool) == isinstance(value, bool)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                fits = True
            if not fits:
                raise ValueError(
                    f"Config.{name} should be {kind.__name__}, got {type(value).__name__}"
                )
        return cls(**values)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        """Defaults overridden by ``ACTORFLOW_<FIELD NAME IN CAPITALS>`` variables."""
        environ = dict(os.environ if environ is None else environ)
        changes: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get("ACTORFLOW_" + f.name.upper())
            if raw is None:
                continue
            kind: Any = type(f.default)
            try:
                if kind is bool:
                    changes[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                else:
                    changes[f.name] = kind(raw)
            except ValueError:
                raise ValueError(
                    f"ACTORFLOW_{f.name.upper()}={raw!r} is not a valid {kind.__name__}"
                ) from None
        return cls(**changes)
