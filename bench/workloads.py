"""Workload definitions.

Every workload is a small function taking ``api`` -- a module that is either
``actorflow`` or ``ray`` -- and only using the Ray-Core-shaped surface both share:
``init / remote / get / put / wait / shutdown``, ``.remote()``, ``.options(...)``.

Rate workloads mirror the loop bodies of Ray's ``ray/_private/ray_perf.py``
(``ray microbenchmark``); the batch sizes of the fan-out workloads are smaller
than Ray's so that a full run fits a 2-core machine (ops/s is per call, so the
numbers stay comparable between the two frameworks).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import REPO_ROOT
from .timing import summarize

ONE_GIB = 1 << 30
PUT_BYTES = 100 * 1024 * 1024 * 8  # Ray's "put gigabytes" array: 100 Mi int64 = 800 MiB
FANOUT_CALLS = 2000  # calls per server per op in 1:n / n:n (Ray uses 5000)
NN_TASKS = 4  # "m" in Ray's n:n and "multi client tasks async"
BATCH = 1000
MULTI_PUT_TASKS = 10  # Ray's "multi client put calls/gigabytes": 10 tasks per op
MULTI_PUT_SMALL = 100  # put(0) per task ("multi client put calls")
MULTI_PUT_LARGE = 10  # puts of an 80 MiB array per task ("multi client put gigabytes")
MULTI_PUT_BYTES = 10 * 1024 * 1024 * 8  # Ray: np.zeros(10 Mi, int64) = 80 MiB
MULTI_TASK_CALLS = 1000  # tasks per client actor in "multi client tasks async" (Ray: 10,000)
ARG_CALLS = 1000  # calls per client in "n:n actor calls with arg async" (same as Ray)


@dataclass
class Config:
    warmup: float = 1.0
    rounds: int = 4
    duration: float = 2.0
    reps: int = 5  # repetitions of one-shot measurements (init, latency)
    settle: float = 1.0  # idle seconds after a workload's setup / before sampling RSS
    framework: str = "actorflow"
    module: str = "actorflow"

    @property
    def timed(self) -> float:
        return self.warmup + self.rounds * self.duration


@dataclass
class Workload:
    key: str
    name: str
    unit: str
    # rate workloads: setup(api, ns) -> (fn, multiplier); measured by measure_rate
    setup: Callable | None = None
    # custom workloads: run(api, ns, cfg, deadline) -> record dict (mean/std/median/samples)
    run: Callable | None = None
    higher_is_better: bool = True
    needs_cluster: bool = True
    floor: str | None = None  # "rtt" | "pipelined" | "memcpy" | "memcpy_latency"
    doc: str = ""
    budget_fn: Callable[[Config], float] | None = None  # expected seconds (excl. init)
    min_warmup_calls: int = 1  # untimed calls at least (first-touch of big buffers)

    def budget(self, cfg: Config) -> float:
        """Expected seconds of one run (setup + settle + timing), excluding init/shutdown."""
        return (self.budget_fn(cfg) if self.budget_fn else cfg.timed + 2.0) + cfg.settle


# --------------------------------------------------------------------------------------
# remote definitions, built once per API module (closures -> pickled by value)
# --------------------------------------------------------------------------------------


def _remote(api, obj, **opts):
    """``api.remote(**opts)(obj)``; falls back on bare ``api.remote(obj)`` if the
    framework rejects the options (e.g. no ``num_cpus``)."""
    if opts:
        try:
            return api.remote(**opts)(obj)
        except TypeError:
            pass
    return api.remote(obj)


class Namespace:
    pass


def build(api) -> Namespace:
    ns = Namespace()

    def small_value():
        return b"ok"

    def create_object_containing_ref():
        return [api.put(1) for _ in range(10000)]

    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

    class AsyncActor:
        async def small_value(self):
            return b"ok"

        async def small_value_with_arg(self, x):
            return b"ok"

    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n):
            refs = []
            for s in self.servers:
                refs.extend([s.small_value.remote() for _ in range(n)])
            api.get(refs)

        def small_value_batch_arg(self, n):
            x = api.put(0)
            refs = []
            for s in self.servers:
                refs.extend([s.small_value_arg.remote(x) for _ in range(n)])
            api.get(refs)

    ns.small_value = _remote(api, small_value)
    ns.create_object_containing_ref = _remote(api, create_object_containing_ref)
    ns.Actor = _remote(api, Actor, num_cpus=0)
    ns.AsyncActor = _remote(api, AsyncActor)
    ns.Client = _remote(api, Client, num_cpus=0)

    def nn_work(actors, n):
        k = len(actors)
        api.get([actors[i % k].small_value.remote() for i in range(n)])

    ns.nn_work = _remote(api, nn_work)

    # ---- multi client workloads: tasks / actors that themselves submit work
    small_value_rf = ns.small_value

    class TaskClient:
        # Ray's Actor.small_value_batch (its own class here, so that the other actor
        # workloads do not ship a remote function inside their class)
        def small_value_batch(self, n):
            api.get([small_value_rf.remote() for _ in range(n)])

    ns.TaskClient = _remote(api, TaskClient, num_cpus=0)

    def do_put_small():
        for _ in range(MULTI_PUT_SMALL):
            api.put(0)

    def do_put():
        import numpy as np

        # one touched array per task, put MULTI_PUT_LARGE times (Ray allocates a
        # fresh np.zeros per put, whose untouched pages read as the shared zero page)
        arr = np.ones(MULTI_PUT_BYTES // 8, dtype=np.int64)
        for _ in range(MULTI_PUT_LARGE):
            api.put(arr)

    ns.do_put_small = _remote(api, do_put_small)
    ns.do_put = _remote(api, do_put)
    return ns


def n_cpus() -> int:
    return os.cpu_count() or 1


# --------------------------------------------------------------------------------------
# rate workloads: setup(api, ns) -> (fn, multiplier)
# --------------------------------------------------------------------------------------


def _get_calls(api, ns):
    ref = api.put(0)
    return (lambda: api.get(ref)), 1


def _put_calls(api, ns):
    return (lambda: api.put(0)), 1


def _tasks_sync(api, ns):
    f = ns.small_value
    return (lambda: api.get(f.remote())), 1


def _tasks_async(api, ns):
    f = ns.small_value
    return (lambda: api.get([f.remote() for _ in range(BATCH)])), BATCH


def _tasks_get_batch(api, ns):
    f = ns.small_value
    return (lambda: api.get([f.remote() for _ in range(BATCH)])), 1


def _warm_actor(api, handle):
    api.get(handle.small_value.remote())  # wait until the actor is up (not timed)
    return handle


def _actor_sync(api, ns):
    a = _warm_actor(api, ns.Actor.remote())
    return (lambda: api.get(a.small_value.remote())), 1


def _actor_async(api, ns):
    a = _warm_actor(api, ns.Actor.remote())
    return (lambda: api.get([a.small_value.remote() for _ in range(BATCH)])), BATCH


def _actor_concurrent(api, ns):
    a = _warm_actor(api, ns.Actor.options(max_concurrency=16).remote())
    return (lambda: api.get([a.small_value.remote() for _ in range(BATCH)])), BATCH


def _one_to_n(api, ns):
    servers = [_warm_actor(api, ns.Actor.remote()) for _ in range(n_cpus())]
    client = ns.Client.remote(servers)
    api.get(client.small_value_batch.remote(1))
    return (lambda: api.get(client.small_value_batch.remote(FANOUT_CALLS))), FANOUT_CALLS * len(
        servers
    )


def _n_to_n(api, ns):
    actors = [_warm_actor(api, ns.Actor.remote()) for _ in range(n_cpus())]
    work = ns.nn_work
    api.get(work.remote(actors, 1))
    return (
        lambda: api.get([work.remote(actors, FANOUT_CALLS) for _ in range(NN_TASKS)])
    ), NN_TASKS * FANOUT_CALLS


def _async_actor_sync(api, ns):
    a = _warm_actor(api, ns.AsyncActor.remote())
    return (lambda: api.get(a.small_value.remote())), 1


def _async_actor_async(api, ns):
    a = _warm_actor(api, ns.AsyncActor.remote())
    return (lambda: api.get([a.small_value.remote() for _ in range(BATCH)])), BATCH


def _async_actor_args(api, ns):
    a = _warm_actor(api, ns.AsyncActor.remote())
    return (lambda: api.get([a.small_value_with_arg.remote(i) for i in range(BATCH)])), BATCH


def _one_to_n_async(api, ns):
    servers = [_warm_actor(api, ns.AsyncActor.remote()) for _ in range(n_cpus())]
    client = ns.Client.remote(servers)
    api.get(client.small_value_batch.remote(1))
    return (lambda: api.get(client.small_value_batch.remote(FANOUT_CALLS))), FANOUT_CALLS * len(
        servers
    )


def _n_to_n_async(api, ns):
    actors = [_warm_actor(api, ns.AsyncActor.remote()) for _ in range(n_cpus())]
    work = ns.nn_work
    api.get(work.remote(actors, 1))
    return (
        lambda: api.get([work.remote(actors, FANOUT_CALLS) for _ in range(NN_TASKS)])
    ), NN_TASKS * FANOUT_CALLS


def _n_to_n_arg(api, ns):
    servers = [_warm_actor(api, ns.Actor.remote()) for _ in range(n_cpus())]
    clients = [ns.Client.remote(s) for s in servers]
    api.get([c.small_value_batch_arg.remote(1) for c in clients])
    return (
        lambda: api.get([c.small_value_batch_arg.remote(ARG_CALLS) for c in clients])
    ), ARG_CALLS * len(clients)


def _multi_tasks_async(api, ns):
    clients = [ns.TaskClient.remote() for _ in range(NN_TASKS)]
    api.get([c.small_value_batch.remote(1) for c in clients])  # actors up, tasks warm
    return (
        lambda: api.get([c.small_value_batch.remote(MULTI_TASK_CALLS) for c in clients])
    ), NN_TASKS * MULTI_TASK_CALLS


def _multi_put_calls(api, ns):
    f = ns.do_put_small
    api.get([f.remote() for _ in range(MULTI_PUT_TASKS)])
    return (
        lambda: api.get([f.remote() for _ in range(MULTI_PUT_TASKS)])
    ), MULTI_PUT_TASKS * MULTI_PUT_SMALL


def _multi_put_gigabytes(api, ns):
    f = ns.do_put
    return (
        lambda: api.get([f.remote() for _ in range(MULTI_PUT_TASKS)])
    ), MULTI_PUT_TASKS * MULTI_PUT_LARGE * MULTI_PUT_BYTES / 1e9


def _put_gigabytes(api, ns):
    import numpy as np

    arr = np.ones(PUT_BYTES // 8, dtype=np.int64)  # touched pages (Ray uses np.zeros)
    return (lambda: api.put(arr)), PUT_BYTES / 1e9


def _get_10k_refs(api, ns):
    ref = ns.create_object_containing_ref.remote()
    inner = api.get(ref)
    if len(inner) != 10000:
        raise RuntimeError(f"expected 10000 refs, got {len(inner)}")
    del inner
    return (lambda: api.get(ref)), 1


def _wait_1k_refs(api, ns):
    f = ns.small_value

    def body():
        not_ready = [f.remote() for _ in range(BATCH)]
        for _ in range(BATCH):
            _ready, not_ready = api.wait(not_ready, num_returns=1)

    return body, 1


# --------------------------------------------------------------------------------------
# custom workloads
# --------------------------------------------------------------------------------------


def _get_gib_latency(api, ns, cfg: Config, deadline: float) -> dict:
    import numpy as np

    arr = np.ones(ONE_GIB // 8, dtype=np.float64)
    t = time.perf_counter()
    ref = api.put(arr)
    put_s = time.perf_counter() - t
    del arr
    samples = []
    first_ms = None
    n = max(3, cfg.reps * 2)
    while len(samples) < n and (len(samples) < 2 or time.perf_counter() < deadline):
        t = time.perf_counter()
        x = api.get(ref)
        dt = (time.perf_counter() - t) * 1e3
        if x.nbytes != ONE_GIB:
            raise RuntimeError(f"got {x.nbytes} bytes")
        del x
        if first_ms is None:
            first_ms = dt
        samples.append(dt)
    out = summarize(samples)
    out["extra"] = {"first_get_ms": first_ms, "put_s": put_s}
    return out


def _probe_cmd(cfg: Config, probe: str) -> list:
    return [
        sys.executable,
        "-m",
        "bench.runner",
        "--probe",
        probe,
        "--framework",
        cfg.framework,
        "--module",
        cfg.module,
        "--settle",
        str(cfg.settle),
    ]


def _run_probe(cfg: Config, probe: str, timeout: float) -> dict:
    """Run ``bench.runner --probe`` in a fresh interpreter, return its JSON line."""
    p = subprocess.run(
        _probe_cmd(cfg, probe),
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            res = json.loads(line)
            if "error" in res:
                raise RuntimeError(res["error"])
            return res
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"probe {probe} exited {p.returncode}: {tail[0][:200]}")


def _init_to_first_result(api, ns, cfg: Config, deadline: float) -> dict:
    runs = []
    while len(runs) < cfg.reps and (len(runs) < 2 or time.perf_counter() < deadline):
        runs.append(_run_probe(cfg, "init", timeout=120))
    out = summarize([r["init_to_result_s"] for r in runs])
    out["extra"] = {
        "import_s_median": statistics.median(r["import_s"] for r in runs),
        "init_s_median": statistics.median(r["init_s"] for r in runs),
        "shutdown_s_median": statistics.median(r["shutdown_s"] for r in runs),
    }
    ages = [r["process_to_result_s"] for r in runs if r.get("process_to_result_s") is not None]
    if ages:
        out["extra"]["process_start_to_result_s_median"] = statistics.median(ages)
    return out


def _install_size(api, ns, cfg: Config, deadline: float) -> dict:
    from .install_size import measure, roots_for_module

    res = measure(roots_for_module(cfg.module))
    if res["missing"]:
        res["note"] = "required but not installed: " + ", ".join(res["missing"])
    out = summarize([res["mib"]])
    out["extra"] = {k: v for k, v in res.items() if k != "mib"}
    return out


def _idle_rss(api, ns, cfg: Config, deadline: float) -> dict:
    res = _run_probe(cfg, "rss", timeout=120)
    out = summarize(res["rss_mb_samples"])
    out["extra"] = {k: v for k, v in res.items() if k != "rss_mb_samples"}
    return out


# --------------------------------------------------------------------------------------
# registry (table order)
# --------------------------------------------------------------------------------------

W = Workload
WORKLOADS: list[Workload] = [
    W(
        "init",
        "init to first result",
        "s",
        run=_init_to_first_result,
        higher_is_better=False,
        needs_cluster=False,
        budget_fn=lambda c: c.reps * 4.0,
        doc="seconds from the start of init() to the first task's result, fresh process each "
        "time (median of --reps runs; import time reported separately)",
    ),
    W(
        "rss",
        "idle RSS of the local cluster",
        "MB",
        run=_idle_rss,
        higher_is_better=False,
        needs_cluster=False,
        budget_fn=lambda c: c.settle + 10.0,
        doc="sum of VmRSS of the driver and every descendant process after init() and one "
        "task, sampled from /proc (PSS and a per-process breakdown in the JSON)",
    ),
    W(
        "install",
        "install size",
        "MB",
        run=_install_size,
        higher_is_better=False,
        needs_cluster=False,
        budget_fn=lambda c: 20.0,
        doc="MiB on disk of the framework's distribution and its requirement closure "
        "(files listed in each dist's RECORD; editable installs: the source packages)",
    ),
    W(
        "get_calls",
        "single client get calls",
        "ops/s",
        _get_calls,
        doc="get() of a small object created by put()",
    ),
    W("put_calls", "single client put calls", "ops/s", _put_calls, doc="put(0)"),
    W(
        "multi_put_calls",
        "multi client put calls",
        "ops/s",
        _multi_put_calls,
        doc=f"{MULTI_PUT_TASKS} tasks each put(0) {MULTI_PUT_SMALL} times, then get() of the "
        "tasks; per put",
    ),
    W(
        "tasks_sync",
        "single client tasks sync",
        "ops/s",
        _tasks_sync,
        floor="rtt",
        doc="get(f.remote()) one at a time",
    ),
    W(
        "tasks_async",
        "single client tasks async",
        "ops/s",
        _tasks_async,
        floor="pipelined",
        doc="1,000 f.remote() submitted then one get() of the list; per task",
    ),
    W(
        "tasks_batch",
        "single client tasks and get batch",
        "batches/s",
        _tasks_get_batch,
        doc="same loop as 'tasks async' counted in batches of 1,000 (as ray_perf does)",
    ),
    W(
        "multi_tasks_async",
        "multi client tasks async",
        "ops/s",
        _multi_tasks_async,
        floor="pipelined",
        budget_fn=lambda c: c.timed + 6.0,
        doc=f"{NN_TASKS} client actors each submit {MULTI_TASK_CALLS} tasks and get() them "
        "(Ray: 10,000); per task",
    ),
    W(
        "actor_sync",
        "1:1 actor calls sync",
        "ops/s",
        _actor_sync,
        floor="rtt",
        doc="get(a.m.remote()) one at a time on one sync actor",
    ),
    W(
        "actor_async",
        "1:1 actor calls async",
        "ops/s",
        _actor_async,
        floor="pipelined",
        doc="1,000 calls on one sync actor then get() of the list; per call",
    ),
    W(
        "actor_concurrent",
        "1:1 actor calls concurrent",
        "ops/s",
        _actor_concurrent,
        floor="pipelined",
        doc="as 'async' on an actor with max_concurrency=16",
    ),
    W(
        "one_to_n",
        "1:n actor calls async",
        "ops/s",
        _one_to_n,
        floor="pipelined",
        doc=f"a client actor calls n=cpu_count actors {FANOUT_CALLS} times each, then get()",
    ),
    W(
        "n_to_n",
        "n:n actor calls async",
        "ops/s",
        _n_to_n,
        floor="pipelined",
        doc=f"{NN_TASKS} tasks each make {FANOUT_CALLS} calls round-robin over cpu_count actors",
    ),
    W(
        "n_to_n_arg",
        "n:n actor calls with arg async",
        "ops/s",
        _n_to_n_arg,
        floor="pipelined",
        budget_fn=lambda c: c.timed + 4.0,
        doc=f"n=cpu_count client actors, each with its own server actor: put(0) once, then "
        f"{ARG_CALLS} calls passing that ref, then get()",
    ),
    W(
        "async_actor_sync",
        "1:1 async-actor calls sync",
        "ops/s",
        _async_actor_sync,
        floor="rtt",
        doc="as '1:1 actor calls sync' on an actor whose methods are async def",
    ),
    W(
        "async_actor_async",
        "1:1 async-actor calls async",
        "ops/s",
        _async_actor_async,
        floor="pipelined",
        doc="as '1:1 actor calls async' on an async actor",
    ),
    W(
        "async_actor_args",
        "1:1 async-actor calls with args async",
        "ops/s",
        _async_actor_args,
        floor="pipelined",
        doc="1,000 calls m(i) on an async actor then get() of the list; per call",
    ),
    W(
        "one_to_n_async",
        "1:n async-actor calls async",
        "ops/s",
        _one_to_n_async,
        floor="pipelined",
        doc=f"as '1:n actor calls async' with cpu_count async actors ({FANOUT_CALLS} calls each)",
    ),
    W(
        "n_to_n_async",
        "n:n async-actor calls async",
        "ops/s",
        _n_to_n_async,
        floor="pipelined",
        doc=f"as 'n:n actor calls async': {NN_TASKS} tasks x {FANOUT_CALLS} calls over "
        "cpu_count async actors",
    ),
    W(
        "put_gigabytes",
        "single client put gigabytes",
        "GB/s",
        _put_gigabytes,
        floor="memcpy",
        min_warmup_calls=2,
        budget_fn=lambda c: c.timed + 6.0,
        doc="put() of an 800 MiB int64 numpy array (GB = 1e9 bytes); >= 2 untimed puts",
    ),
    W(
        "multi_put_gigabytes",
        "multi client put gigabytes",
        "GB/s",
        _multi_put_gigabytes,
        floor="memcpy",
        budget_fn=lambda c: c.timed + 20.0,
        doc=f"{MULTI_PUT_TASKS} tasks each put() an 80 MiB int64 array {MULTI_PUT_LARGE} times "
        "(8 GB per op, as Ray)",
    ),
    W(
        "get_gib_latency",
        "get 1 GiB array latency",
        "ms",
        run=_get_gib_latency,
        higher_is_better=False,
        floor="memcpy_latency",
        budget_fn=lambda c: c.reps * 2 + 10.0,
        doc="get() of a 1 GiB float64 array put() by the driver (median; first get in JSON)",
    ),
    W(
        "get_10k_refs",
        "single client get object containing 10k refs",
        "ops/s",
        _get_10k_refs,
        doc="get() of a task result that is a list of 10,000 refs (each put() in the task)",
    ),
    W(
        "wait_1k_refs",
        "single client wait 1k refs",
        "ops/s",
        _wait_1k_refs,
        doc="submit 1,000 tasks, then wait(num_returns=1) 1,000 times; one op = whole loop",
    ),
]

BY_KEY = {w.key: w for w in WORKLOADS}


def select(pattern: str | None) -> list[Workload]:
    """Workloads whose key or name matches ``pattern`` (comma-separated; each a
    case-insensitive substring or an fnmatch glob; a part that is exactly a key
    selects that workload only, so ``n_to_n`` does not also pick ``n_to_n_arg``)."""
    if not pattern:
        return list(WORKLOADS)
    import fnmatch

    pats = [p.strip().lower() for p in pattern.split(",") if p.strip()]

    exact = {p for p in pats if p in BY_KEY}
    pats = [p for p in pats if p not in exact]

    def hit(w: Workload) -> bool:
        if w.key in exact:
            return True
        for p in pats:
            for s in (w.key.lower(), w.name.lower()):
                if (any(ch in p for ch in "*?[") and fnmatch.fnmatch(s, p)) or p in s:
                    return True
        return False

    return [w for w in WORKLOADS if hit(w)]
