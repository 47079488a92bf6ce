"""Ray's single-node scalability envelope, probed on this machine, next to Ray.

    python -m bench.scale [--only PROBE,...] [--size F] [--ray-python PATH] [--no-ray]

Each probe runs in an interpreter of its own (one framework, one probe, a fresh cluster),
with a sampler that keeps the peak RSS and PSS of the whole process tree (the driver and every
process the cluster started). Ray's envelope (release/benchmarks/README.md, on an m4.16xlarge)
is printed beside the figures. ``--size`` scales every count (``--size 0.01`` is a quick check
that each probe works); a probe that fails or runs past its timeout is reported as such, with
the last error line. Results go to bench/results/scale-<timestamp>.json (and scale-latest.json).

Probes:
  args        10,000 object arguments to one task
  returns     3,000 returns from one task
  get         10,000 shared-memory objects (120 KB each) in one get, then the shutdown time
  queued      1,000,000 no-op tasks queued on one node: submit time, memory per queued task
  big_object  a 6 GiB numpy array put, then read zero-copy by a task
  actors      1,000 actors on one node with default settings: creation time and unique
              memory (USS) per actor
  async_calls 100,000 concurrent awaited calls on one async actor
  nodes       32 node processes via LocalCluster: idle memory per node, the GCS's CPU at idle
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.child import ray_python, report, run_child
from bench.procinfo import descendants, tree_memory

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# Ray's published envelope (single node unless said), for the table.
RAY_ENVELOPE = {
    "args": "10,000+ object arguments to one task",
    "returns": "3,000+ returns from one task",
    "get": "10,000+ plasma objects in one get",
    "queued": "1,000,000+ tasks queued on one node",
    "big_object": "100 GiB+ object (on a 244 GiB machine)",
    "actors": "10,000+ actors (on a cluster)",
    "async_calls": "(not in Ray's list)",
    "nodes": "250+ nodes (on a cluster)",
}
BASE = {
    "args": 10_000,
    "returns": 3_000,
    "get": 10_000,
    "queued": 1_000_000,
    "big_object": 6 * 1024**3,
    "actors": 1_000,
    "async_calls": 100_000,
    "nodes": 32,
}
TIMEOUTS = {"queued": 1500, "actors": 1500, "nodes": 900}
# Ray's actors are ~40 MB of unique memory each here: 1,000 would need ~40 GB on this 24 GiB
# machine (and take down whatever else runs on it), so Ray is probed up to this many.
RAY_CAPS = {"actors": 250}


# -- measuring ----------------------------------------------------------------------------------


class PeakMemory:
    """Samples the RSS and PSS of this process's tree every `every` seconds."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.rss_mb = self.pss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> dict:
        tree = tree_memory()
        self.rss_mb = max(self.rss_mb, tree["rss_mb"])
        self.pss_mb = max(self.pss_mb, tree["pss_mb"])
        return tree

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()


def _uss_mb(pid: int) -> float:
    """Memory only this process has (private pages), in MB."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        return 0.0
    return total / 1024


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


# -- the probes (the same code for both frameworks: `api` is actorflow or ray) ----------------


def probe_args(api: Any, n: int) -> dict:
    @api.remote
    def count(*refs_resolved: Any) -> int:
        return len(refs_resolved)

    api.get(count.remote())  # a worker up and the function known: time the arguments only
    refs = [api.put(i) for i in range(n)]
    got, seconds = _timed(lambda: api.get(count.remote(*refs)))
    assert got == n, got
    return {"seconds": seconds}


def probe_returns(api: Any, n: int) -> dict:
    @api.remote(num_returns=n)
    def many() -> tuple:
        return tuple(range(n))

    @api.remote
    def warm() -> None:
        return None

    api.get(warm.remote())
    values, seconds = _timed(lambda: api.get(list(many.remote())))
    assert values == list(range(n))
    return {"seconds": seconds}


def probe_get(api: Any, n: int) -> dict:
    import numpy as np

    refs = [api.put(np.full(120_000 // 8, i, dtype=np.int64)) for i in range(n)]
    start = time.perf_counter()
    values = api.get(refs)
    seconds = time.perf_counter() - start
    assert all(int(v[0]) == i for i, v in enumerate(values))
    return {"seconds": seconds}


def probe_queued(api: Any, n: int, memory: PeakMemory) -> dict:
    """n no-op tasks submitted while a gate task holds both CPUs, so that all n are queued
    (none runs) when the tree's RSS is read: the bytes per queued task are the owner's cost of
    a waiting task, not of finished results."""

    @api.remote(num_cpus=1)
    def noop() -> None:
        return None

    @api.remote(num_cpus=2)
    def gate(path: str) -> None:
        import os as os_
        import time as time_

        while not os_.path.exists(path):
            time_.sleep(0.05)

    api.get([noop.remote() for _ in range(10)])
    with tempfile.TemporaryDirectory(prefix="scale-gate-") as gate_dir:
        opened = os.path.join(gate_dir, "open")
        held = gate.remote(opened)
        time.sleep(2.0)  # the gate is running: every CPU is taken
        before = memory.sample()["rss_mb"]
        start = time.perf_counter()
        refs = [noop.remote() for _ in range(n)]
        submitted = time.perf_counter() - start
        time.sleep(1.0)  # what the submissions left for the loop is done
        queued = memory.sample()["rss_mb"]
        with open(opened, "w"):
            pass
        run_start = time.perf_counter()
        api.get(held)
        api.get(refs)
        ran = time.perf_counter() - run_start
    return {
        "seconds": submitted + ran,
        "submit_seconds": submitted,
        "run_seconds": ran,
        "bytes_per_queued_task": (queued - before) * 1024 * 1024 / n,
    }


def probe_big_object(api: Any, nbytes: int) -> dict:
    import numpy as np

    @api.remote
    def checksum(array: Any) -> tuple[int, bool]:
        return int(array[:: 1 << 20].sum()), not array.flags.writeable

    start = time.perf_counter()
    ref = api.put(np.ones(nbytes // 8, dtype=np.int64))  # the driver's copy goes at once
    put_seconds = time.perf_counter() - start
    (total, read_only), seconds = _timed(lambda: api.get(checksum.remote(ref)))
    assert total == len(range(0, nbytes // 8, 1 << 20)), total
    return {"seconds": put_seconds + seconds, "put_seconds": put_seconds, "zero_copy": read_only}


def probe_actors(api: Any, n: int) -> dict:
    @api.remote
    class Tiny:
        def pid(self) -> int:
            return os.getpid()

    start = time.perf_counter()
    actors = [Tiny.remote() for _ in range(n)]
    pids = api.get([a.pid.remote() for a in actors])
    seconds = time.perf_counter() - start
    uss = sorted(_uss_mb(pid) for pid in pids)
    return {
        "seconds": seconds,
        "ms_per_actor": seconds / n * 1000,
        "uss_mb_per_actor_median": uss[len(uss) // 2],
        "actors_alive": len(set(pids)),
    }


def probe_async_calls(api: Any, n: int) -> dict:
    @api.remote
    class Async:
        async def call(self, i: int) -> int:
            await asyncio.sleep(0)
            return i

    actor = Async.remote()
    api.get(actor.call.remote(0))

    async def many() -> list:
        return await asyncio.gather(*[actor.call.remote(i) for i in range(n)])

    values, seconds = _timed(lambda: asyncio.run(many()))
    assert values == list(range(n))
    return {"seconds": seconds}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- running one probe ----------------------------------------------------------------------------


def run_actorflow(probe: str, n: int) -> dict:
    import actorflow

    with PeakMemory() as memory, tempfile.TemporaryDirectory(prefix="af-scale-") as root:
        if probe == "nodes":
            return _nodes_actorflow(n, root, memory)
        figures = _on_one_node(actorflow, probe, n, memory, _temp_dir=root)
    figures.update(peak_rss_mb=memory.rss_mb, peak_pss_mb=memory.pss_mb)
    return figures


def run_ray(probe: str, n: int) -> dict:
    import ray

    with PeakMemory() as memory:
        if probe == "nodes":
            return _nodes_ray(n, memory)
        figures = _on_one_node(ray, probe, n, memory)
    figures.update(peak_rss_mb=memory.rss_mb, peak_pss_mb=memory.pss_mb)
    return figures


def _on_one_node(api: Any, probe: str, n: int, memory: PeakMemory, **init_kwargs: Any) -> dict:
    """The probe on a fresh one-node cluster of api's (2 CPUs), and how long it took to end."""
    if probe == "big_object":
        init_kwargs["object_store_memory"] = n + 2 * 1024**3
    api.init(num_cpus=2, **init_kwargs)
    try:
        figures = _run_probe(api, probe, n, memory)
    finally:
        _, down = _timed(api.shutdown)
    figures["shutdown_seconds"] = down
    return figures


def _run_probe(api: Any, probe: str, n: int, memory: PeakMemory) -> dict:
    if probe == "queued":
        return probe_queued(api, n, memory)
    return PROBES[probe](api, n)


def _idle_figures(n: int, node_pids: list[int], gcs_pid: int, memory: PeakMemory) -> dict:
    time.sleep(2.0)  # settle
    cpu_before, start = _cpu_seconds(gcs_pid), time.monotonic()
    time.sleep(5.0)
    gcs_cpu = (_cpu_seconds(gcs_pid) - cpu_before) / (time.monotonic() - start)
    per_node = [tree_memory(pid)["pss_mb"] for pid in node_pids]  # a node and its workers
    memory.sample()
    return {
        "nodes": n,
        "pss_mb_per_node_median": sorted(per_node)[len(per_node) // 2],
        "gcs_cpu_share_idle": gcs_cpu,
    }


def _nodes_actorflow(n: int, root: str, memory: PeakMemory) -> dict:
    from actorflow.util.local_cluster import LocalCluster

    start = time.perf_counter()
    with LocalCluster(session_root=root) as cluster:
        infos = [cluster.add_node(num_cpus=1) for _ in range(n)]
        seconds = time.perf_counter() - start
        gcs_pid = cluster.gcs["popen"].pid if cluster.gcs else infos[0]["pid"]
        figures = _idle_figures(n, [i["pid"] for i in infos], gcs_pid, memory)
    figures.update(seconds=seconds, peak_rss_mb=memory.rss_mb, peak_pss_mb=memory.pss_mb)
    return figures


def _nodes_ray(n: int, memory: PeakMemory) -> dict:
    from ray.cluster_utils import Cluster

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(n - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        seconds = time.perf_counter() - start
        raylets = [p for p in descendants(os.getpid()) if "raylet" in _cmdline(p)]
        gcs = [p for p in descendants(os.getpid()) if "gcs_server" in _cmdline(p)]
        figures = _idle_figures(n, raylets, gcs[0], memory)
    finally:
        cluster.shutdown()
    figures.update(seconds=seconds, peak_rss_mb=memory.rss_mb, peak_pss_mb=memory.pss_mb)
    return figures


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


PROBES: dict[str, Callable[[Any, int], dict]] = {
    "args": probe_args,
    "returns": probe_returns,
    "get": probe_get,
    "big_object": probe_big_object,
    "actors": probe_actors,
    "async_calls": probe_async_calls,
}


# -- the parent -----------------------------------------------------------------------------------


def _child(framework: str, probe: str, n: int) -> None:
    figures = (run_ray if framework == "ray" else run_actorflow)(probe, n)
    report(figures)


def _measure(python: str, framework: str, probe: str, n: int) -> dict:
    args = ["--child", framework, "--probe", probe, "--count", str(n)]
    try:
        return run_child(python, "bench.scale", args, timeout=TIMEOUTS.get(probe, 600))
    except Exception as exc:  # the probe failed or timed out: say so, keep going
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return {"failed": lines[-1][:200] if lines else type(exc).__name__}


def _row(figures: dict) -> str:
    if "failed" in figures:
        return f"FAILED: {figures['failed']}"
    keys = [k for k in figures if k not in ("peak_pss_mb",)]
    return ", ".join(f"{k} {_fmt(figures[k])}" for k in keys)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated probes (default: all)")
    parser.add_argument("--size", type=float, default=1.0, help="scale every count by this")
    parser.add_argument("--ray-python", default="")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--ray-only", action="store_true", help="measure Ray alone")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--probe", default="", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.probe, args.count)
        return
    probes = [p for p in args.only.split(",") if p] or list(BASE)
    unknown = set(probes) - set(BASE)
    if unknown:
        parser.error(f"unknown probes {sorted(unknown)}; known: {', '.join(BASE)}")
    ray = "" if args.no_ray else ray_python(args.ray_python)
    frameworks = [] if args.ray_only else [("actorflow", sys.executable)]
    frameworks += [("ray", ray)] if ray else []
    results: dict = {"size": args.size, "loadavg": _loadavg(), "probes": {}}
    for probe in probes:
        n = max(2 if probe == "nodes" else 1, int(BASE[probe] * args.size))
        row = results["probes"][probe] = {"count": n, "ray_envelope": RAY_ENVELOPE[probe]}
        for framework, python in frameworks:
            count = min(n, RAY_CAPS.get(probe, n)) if framework == "ray" else n
            row[framework] = {"count": count, **_measure(python, framework, probe, count)}
            print(f"{probe:<12} n={count:<10,} {framework:<10} {_row(row[framework])}", flush=True)
    results["loadavg_after"] = _loadavg()
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"scale-{stamp}.json", "scale-latest.json"):
        with open(os.path.join(RESULTS, name), "w") as f:
            json.dump(results, f, indent=2)
    print(f"wrote bench/results/scale-{stamp}.json (load average {results['loadavg']})")


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    main()
