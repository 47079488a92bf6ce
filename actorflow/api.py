"""The top-level API: init, shutdown, remote, get, put, wait, cancel and friends."""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import sys
import threading
import types
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from actorflow import exceptions
from actorflow._private import ids
from actorflow._private.config import Config, env_address
from actorflow._private.protocol.actors import GetNamedActor, KillActor, ListNamedActors
from actorflow._private.runtime_env.spec import validate as validate_runtime_env
from actorflow._private.worker import context
from actorflow._private.worker.core_worker import CoreWorker
from actorflow.dag.compiled_dag_ref import CompiledDAGRef
from actorflow.object_ref import ObjectRef, ObjectRefGenerator

if TYPE_CHECKING:
    from actorflow.actor import ActorClass
    from actorflow.remote_function import RemoteFunction

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

_init_lock = threading.RLock()
_atexit_registered = False

# Ray's init() arguments that have no meaning here and are accepted so Ray code runs unchanged
# (and the few read from ray_compat: the dashboard's, _temp_dir, log_to_driver, ...).
_IGNORED_INIT_ARGS = {
    "include_dashboard",
    "dashboard_host",
    "dashboard_port",
    "configure_logging",
    "logging_level",
    "logging_format",
    "log_to_driver",
    "_temp_dir",
    "_system_config",
    "_metrics_export_port",
}
# actorflow's own: _tls=True runs the embedded cluster (or this driver) with TLS (ACTORFLOW_TLS).
_OWN_INIT_ARGS = {"_tls"}


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    object_store_memory: int | None = None,
    runtime_env: dict[str, Any] | None = None,
    **ray_compat: Any,
) -> InitContext:
    """Connect this process as a driver: to a new embedded local cluster (address None), or to
    a running cluster ("HOST:PORT", or "auto" for the one started on this machine by
    ``actorflow start``). The token comes from ACTORFLOW_TOKEN or the head's session directory
    on this machine. runtime_env: the job's (Ray's fields), inherited by all its tasks and
    actors; its working_dir and py_modules are uploaded to the cluster here.

    ``include_dashboard=True`` (Ray's; the embedded cluster only): serve the web dashboard on
    ``dashboard_host`` (127.0.0.1) and ``dashboard_port`` (8265, or a free port if that one is
    taken); its address is the returned context's ``dashboard_url``, as Ray's."""
    unknown = set(ray_compat) - _IGNORED_INIT_ARGS - _OWN_INIT_ARGS
    if unknown:
        raise TypeError(f"init() got unknown argument(s): {', '.join(sorted(unknown))}")
    if address not in (None, "", "local") and ray_compat.get("_system_config"):
        raise ValueError(  # as Ray: a running cluster's settings are its own
            "_system_config can only be given when init() starts a new cluster, not when it "
            "connects to one"
        )
    with _init_lock:
        if context.core_or_none() is not None:
            if ignore_reinit_error:
                return _info()
            raise RuntimeError(
                "actorflow.init() was already called; call actorflow.shutdown() "
                "first or pass ignore_reinit_error=True"
            )
        from actorflow._private.cluster.local import LocalSession

        job_env = validate_runtime_env(runtime_env)
        config = Config.from_env()
        if ray_compat.get("_temp_dir"):
            config = config.replace(session_root=ray_compat["_temp_dir"])
        if ray_compat.get("_tls") is not None:  # as ACTORFLOW_TLS (README, "TLS")
            config = config.replace(tls=bool(ray_compat["_tls"]))
        if address is None and env_address():
            address = env_address()  # as RAY_ADDRESS: join that cluster
        if address not in (None, "local"):
            if not isinstance(address, str) or not address:
                raise ValueError(f"address must be 'HOST:PORT', 'auto' or None, got {address!r}")
            given = {
                "num_cpus": num_cpus,
                "num_gpus": num_gpus,
                "resources": resources,
                "object_store_memory": object_store_memory,
            }
            wrong = [k for k, v in given.items() if v is not None]
            if wrong:
                raise ValueError(
                    f"init(address=...) joins a running cluster, whose nodes set "
                    f"their own resources: {', '.join(wrong)} cannot be given; pass "
                    f"them to `actorflow start` instead"
                )
            from actorflow._private.cluster.driver import ClusterDriver

            driver = ClusterDriver(config, address, namespace, job_env)
            core = driver.start()
            context.set_core(core, driver)
            _register_atexit()
            return _info()
        if "log_to_driver" in ray_compat:
            config = config.replace(log_to_driver=bool(ray_compat["log_to_driver"]))
        config = _system_config(config, ray_compat.get("_system_config"))
        if object_store_memory is not None:
            if not isinstance(object_store_memory, int) or object_store_memory <= 0:
                raise ValueError(
                    f"object_store_memory must be a positive number of bytes, "
                    f"got {object_store_memory!r}"
                )
            config = config.replace(object_store_memory=object_store_memory)
        session = LocalSession(
            config,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            resources=resources,
            namespace=namespace,
            runtime_env=job_env,
            metrics_export_port=_metrics_port(ray_compat.get("_metrics_export_port")),
            dashboard=_dashboard_options(ray_compat),
        )
        core = session.start()
        context.set_core(core, session)
        _register_atexit()
        info = _info()
        if info.dashboard_url:
            print(f"View the dashboard at http://{info.dashboard_url}", file=sys.stderr)
        return info


class InitContext(dict):  # type: ignore[type-arg]
    """What ``init()`` returns: the session's info as a dict (session_dir, address, node_id,
    resources, ...), and ``dashboard_url`` as an attribute too (Ray's ``RayContext``)."""

    @property
    def dashboard_url(self) -> str:
        """HOST:PORT of the web dashboard ("" when none is served), as Ray's."""
        return str(self.get("dashboard_url") or "")

    @property
    def address_info(self) -> dict[str, Any]:
        return dict(self)


def _dashboard_options(ray_compat: dict[str, Any]) -> dict[str, Any] | None:
    """init(include_dashboard=True, dashboard_host=..., dashboard_port=...): how to serve it."""
    if not ray_compat.get("include_dashboard"):
        return None
    host = ray_compat.get("dashboard_host") or "127.0.0.1"
    port = ray_compat.get("dashboard_port")
    if not isinstance(host, str):
        raise ValueError(f"dashboard_host must be a str, got {host!r}")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
    ):
        raise ValueError(f"dashboard_port must be a port number 0-65535, got {port!r}")
    return {"host": host, "port": port}


# Ray's _system_config keys that have a Config field of the same meaning; others are ignored.
_SYSTEM_CONFIG_KEYS = {"lineage_pinning_enabled": bool, "max_lineage_bytes": int}


def _system_config(config: Config, given: Any) -> Config:
    """Config with the _system_config keys we know applied (a wrong type is a ValueError)."""
    if not given:
        return config
    if not isinstance(given, dict):
        raise ValueError(f"_system_config must be a dict, got {type(given).__name__}")
    changes = {}
    for key, kind in _SYSTEM_CONFIG_KEYS.items():
        if key in given:
            value = given[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"_system_config[{key!r}] must be {kind.__name__}, got {value!r}")
            changes[key] = value
    return config.replace(**changes) if changes else config


def _metrics_port(port: Any) -> int | None:
    """init(_metrics_export_port=...): the port of the embedded node's /metrics (0: free)."""
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"_metrics_export_port must be a port number 0-65535, got {port!r}")
    return port


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True


def _info() -> InitContext:
    session = context.session()
    return InitContext(session.info() if session is not None else {})


def shutdown() -> None:
    """Leave the cluster: an embedded local cluster stops (every process it started ends); a
    driver of a running cluster disconnects (its job ends, with its non-detached actors)."""
    with _init_lock:
        session = context.session()
        core = context.core_or_none()
        if core is None or core.mode != "driver":
            return
        context.set_core(None, None)
        if session is not None:
            session.shutdown()


def is_initialized() -> bool:
    return context.core_or_none() is not None


def _init_on_first_use() -> None:
    with _init_lock:
        if context.core_or_none() is None:
            init()


context.set_auto_init(_init_on_first_use)
_ensure_core = context.ensure_core


class _RemoteDecorator(Protocol):
    """What ``@remote(option=...)`` returns, typed as ``@remote`` itself."""

    @overload
    def __call__(self, target: type[T], /) -> ActorClass[T]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, target: Callable[P, Coroutine[Any, Any, R]], /
    ) -> RemoteFunction[P, R]: ...
    @overload
    def __call__(self, target: Callable[P, R], /) -> RemoteFunction[P, R]: ...


# Typed for checkers: a class gives an ActorClass[T] (its handles ActorHandle[T]); a function
# its parameters and result (an async function's: what it awaits to), so that f.remote(...) is
# checked against f's signature and gives an ObjectRef of its result.
@overload
def remote(target: type[T], /) -> ActorClass[T]: ...  # type: ignore[overload-overlap]
@overload
def remote(  # type: ignore[overload-overlap]
    target: Callable[P, Coroutine[Any, Any, R]], /
) -> RemoteFunction[P, R]: ...
@overload
def remote(target: Callable[P, R], /) -> RemoteFunction[P, R]: ...
@overload
def remote(**options: Any) -> _RemoteDecorator: ...
def remote(*args: Any, **options: Any) -> Any:
    """``@remote`` or ``@remote(option=...)`` on a function (a task) or a class (an actor)."""
    if len(args) == 1 and not options and (inspect.isfunction(args[0]) or inspect.isclass(args[0])):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("@actorflow.remote takes a function or class, or only keyword options")
    if not options:
        raise TypeError(
            "@actorflow.remote() needs options (e.g. @actorflow.remote(num_cpus=2)); without "
            "any, write @actorflow.remote with no parentheses"
        )

    def decorator(target: Any) -> Any:
        return _make_remote(target, options)

    return decorator


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(target):
        from actorflow.actor import ActorClass

        return ActorClass(target, options)
    if inspect.isfunction(target) or inspect.ismethod(target):
        from actorflow.remote_function import RemoteFunction

        return RemoteFunction(target, options)
    raise TypeError(f"@actorflow.remote takes a function or a class, not {type(target).__name__}")


@overload
def get(object_refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...
@overload
def get(object_refs: list[ObjectRef[T]], *, timeout: float | None = None) -> list[T]: ...
@overload
def get(object_refs: Any, *, timeout: float | None = None) -> Any: ...
def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """The value of a ref, or the values of a list of refs, waiting up to timeout seconds."""
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")
    if isinstance(object_refs, ObjectRefGenerator):
        raise TypeError(
            "actorflow.get() got an ObjectRefGenerator: iterate over it (for or "
            "async for) and get each ref it yields"
        )
    if isinstance(object_refs, CompiledDAGRef):
        return object_refs.get(timeout)
    getter = getattr(type(object_refs), "__actorflow_get__", None)
    if getter is not None:  # a result of several calls (an actor mesh's broadcast)
        return getter(object_refs, timeout)
    if isinstance(object_refs, list) and object_refs and isinstance(object_refs[0], CompiledDAGRef):
        return [ref.get(timeout) for ref in object_refs]
    return _ensure_core().get(object_refs, timeout)


def put(value: T) -> ObjectRef[T]:
    """Store a value in the cluster and return a ref to it."""
    return _ensure_core().put(value)


def wait(
    object_refs: list[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Wait until num_returns of the refs are ready or timeout passes; return (ready, not_ready),
    each in the order of the input."""
    return _ensure_core().wait(object_refs, num_returns, timeout, fetch_local)


def cancel(
    ref: ObjectRef | ObjectRefGenerator, *, force: bool = False, recursive: bool = True
) -> None:
    """Cancel the task behind ref: dropped if queued, interrupted if running (force=True ends
    its worker process). Getting the ref then raises TaskCancelledError."""
    core = _ensure_core()
    if isinstance(ref, ObjectRefGenerator):
        target: Any = types.SimpleNamespace(id=ids.object_id(ref._task_id, 0), owner=ref._owner)
    elif isinstance(ref, ObjectRef):
        target = ref
    else:
        raise TypeError(f"actorflow.cancel() takes an ObjectRef, not {type(ref).__name__}")
    core.cancel(target, force=force, recursive=recursive)


def method(*args: Any, **options: Any) -> Any:
    """``@actorflow.method(num_returns=..., concurrency_group=...)`` on an actor method (a bare
    ``@actorflow.method`` changes nothing, as in Ray)."""
    from actorflow._private.worker import options as opts

    if len(args) == 1 and not options and callable(args[0]):
        return args[0]
    if args:
        raise TypeError("@actorflow.method takes only keyword options")
    checked = opts.check(options, opts.METHOD_OPTIONS, "an actor method")

    def decorator(fn: Any) -> Any:
        fn.__actorflow_method_options__ = checked
        return fn

    return decorator


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """The task events of the cluster as a Chrome trace (Ray's ``ray.timeline``): one complete
    ("X") event per attempt that ran, on the row of its node and the line of its worker.
    Returns the list of events, or writes them to filename as JSON (and returns None)."""
    import json

    from actorflow._private.cluster import inspection, task_history

    snapshot = inspection.run(None, inspection.collect_tasks)
    events = task_history.trace_events(task_history.attempt_rows(snapshot))
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


def nodes() -> list[dict[str, Any]]:
    """Every node the cluster has known: id, address, resources, whether it is alive."""
    core = _ensure_core()
    rows = core.call_control(core.gcs_address, "gcs", "get_nodes", None)
    return [
        {
            "NodeID": n["node_id"],
            "Alive": n["alive"],
            "NodeManagerAddress": n.get("host", ""),
            "Address": n["address"],
            "Resources": n["resources"],
            "IsHead": n.get("is_head"),
            "DeathCause": n.get("death_cause", ""),
        }
        for n in rows
    ]


def get_gpu_ids() -> list[int]:
    """The GPUs the current task or actor holds (what CUDA_VISIBLE_DEVICES shows it)."""
    core = _ensure_core()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "") if core.mode == "worker" else ""
    return [int(i) for i in visible.split(",") if i.strip().isdigit()]


def cluster_resources() -> dict[str, float]:
    """The total resources of the live nodes."""
    return _sum_over_nodes("resources")


def available_resources() -> dict[str, float]:
    """What the live nodes have free (as of their last heartbeats)."""
    return {k: v for k, v in _sum_over_nodes("available").items() if v > 0}


def _sum_over_nodes(key: str) -> dict[str, float]:
    if context.core_or_none() is None:
        raise exceptions.RuntimeNotInitializedError("call actorflow.init() first")
    core = _ensure_core()
    session = context.session()
    here = getattr(session, "raylet", None)  # an embedded node: its live figures, not reported
    total: dict[str, float] = {}
    for node in core.call_control(core.gcs_address, "gcs", "get_nodes", None):
        if node["alive"]:
            figures = node[key]
            if here is not None and node["node_id"] == here.node_id and key == "available":
                figures = here.resources.available
            for name, amount in figures.items():
                total[name] = total.get(name, 0.0) + amount
    return total


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """End an actor now: queued and running calls fail with ActorDiedError. With
    no_restart=False it is restarted if it has restarts left."""
    from actorflow.actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise TypeError(f"actorflow.kill() takes an actor handle, not {type(actor).__name__}")
    core = _ensure_core()
    payload = KillActor(actor._actor_id, bool(no_restart))
    if core.on_loop_thread():  # not waited for: resent while the GCS is restarting
        core.gcs_request("actors", "kill_actor", payload)
    else:
        core.call_control(core.gcs_address, "actors", "kill_actor", payload)


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the live actor with this name (in this job's namespace unless given)."""
    from actorflow.actor import ActorHandle

    if not isinstance(name, str) or not name:
        raise ValueError(f"an actor name must be a non-empty string, got {name!r}")
    core = _ensure_core()
    actor_id, meta = core.call_control(
        core.gcs_address,
        "actors",
        "get_named_actor",
        GetNamedActor(name, namespace or core.namespace),
    )
    return ActorHandle(actor_id, meta)


async def get_actor_async(name: str, namespace: str | None = None) -> Any:
    """get_actor for async code, including inside async actors."""
    from actorflow.actor import ActorHandle

    core = _ensure_core()
    payload = GetNamedActor(name, namespace or core.namespace)
    if asyncio.get_running_loop() is core.runtime.loop:
        actor_id, meta = await core.runtime.request(
            core.gcs_address, "actors", "get_named_actor", payload
        )
    else:
        future = asyncio.run_coroutine_threadsafe(_ask(core, payload), core.runtime.loop)
        actor_id, meta = await asyncio.wrap_future(future)
    return ActorHandle(actor_id, meta)


async def _ask(core: CoreWorker, payload: GetNamedActor) -> Any:
    return await core.runtime.request(core.gcs_address, "actors", "get_named_actor", payload)


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    core = _ensure_core()
    found = core.call_control(
        core.gcs_address,
        "actors",
        "list_named_actors",
        ListNamedActors(bool(all_namespaces), core.namespace),
    )
    return found if all_namespaces else [entry["name"] for entry in found]
