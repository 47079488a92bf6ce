"""Broadcasting a no-op call to 1, 8 and 64 actors: an actor mesh against the obvious code.

    python -m bench.mesh [--rounds 5] [--ray-python PATH] [--no-ray]

For each cluster (one node; two LocalCluster nodes, actors spread over them) 64 tiny actors
(num_cpus=0) are made once, as one actorflow mesh; each size n uses its first n members.
Three ways to call n actors and wait for all n results, one broadcast at a time:
  * mesh: ``mesh[:n].noop.broadcast().get()`` (one message per node; a relay per node calls
    its members);
  * list: ``get([a.noop.remote() for a in actors])`` on the same actors (one message each);
  * Ray: the same list comprehension with ``ray.get`` (when Ray is importable from
    --ray-python, or /work/rayvenv/bin/python).
Figures are broadcasts per second, medians of --rounds rounds (mesh and list rounds
alternate), each framework and cluster in an interpreter of its own; results go to
bench/results/mesh-<timestamp>.json (and mesh-latest.json), with the load average before and
after (other processes share the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.child import ray_python, report, run_child

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SIZES = (1, 8, 64)
CALLS = {1: 300, 8: 150, 64: 40}  # broadcasts per round


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _rate(fn: Callable[[], Any], count: int, rounds: int) -> list[float]:
    return _rates({"": fn}, count, rounds)[""]


def _rates(fns: dict[str, Callable[[], Any]], count: int, rounds: int) -> dict[str, list[float]]:
    """Broadcasts per second of each way, rounds alternating between them (which goes first
    alternates too), so that the machine's drifts hit all alike."""
    for fn in fns.values():
        for _ in range(max(3, count // 10)):  # warm up
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for _ in range(rounds):
        for name in order:
            fn = fns[name]
            start = time.perf_counter()
            for _ in range(count):
                fn()
            samples[name].append(count / (time.perf_counter() - start))
        order.reverse()
    return samples


def _actor_class(api: Any) -> Any:
    @api.remote(num_cpus=0)
    class Tiny:
        def noop(self) -> None:
            return None

    return Tiny


def _options(nodes: int) -> dict[str, Any]:
    return {"scheduling_strategy": "SPREAD"} if nodes > 1 else {}


def actorflow_workloads(nodes: int, rounds: int) -> dict[str, list[float]]:
    import actorflow

    tiny = _actor_class(actorflow)
    mesh = tiny.options(**_options(nodes)).mesh(max(SIZES))
    out: dict[str, list[float]] = {}
    for n in SIZES:
        part = mesh[:n]
        actors = list(part)
        ways = {
            f"mesh {n}": lambda p=part: p.noop.broadcast().get(),
            f"list {n}": lambda a=actors: actorflow.get([x.noop.remote() for x in a]),
        }
        out.update(_rates(ways, CALLS[n], rounds))
    out["relays"] = [float(len(mesh.relay_stats()))]
    mesh.kill()
    return out


def ray_workloads(api: Any, nodes: int, rounds: int) -> dict[str, list[float]]:
    tiny = _actor_class(api).options(**_options(nodes))
    every = [tiny.remote() for _ in range(max(SIZES))]
    api.get([a.noop.remote() for a in every])
    out: dict[str, list[float]] = {}
    for n in SIZES:
        actors = every[:n]
        out[f"list {n}"] = _rate(
            lambda a=actors: api.get([x.noop.remote() for x in a]), CALLS[n], rounds
        )
    return out


def run_actorflow(nodes: int, rounds: int) -> dict[str, list[float]]:
    import actorflow
    from actorflow.util.local_cluster import LocalCluster

    with (
        tempfile.TemporaryDirectory(prefix="af-bench-") as root,
        LocalCluster(session_root=root) as cluster,
    ):
        for _ in range(nodes):
            cluster.add_node(num_cpus=2)
        os.environ["ACTORFLOW_SESSION_ROOT"] = root  # where init finds the cluster's token
        actorflow.init(address=cluster.address)
        try:
            return actorflow_workloads(nodes, rounds)
        finally:
            actorflow.shutdown()


def run_ray(nodes: int, rounds: int) -> dict[str, list[float]]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        return ray_workloads(ray, nodes, rounds)
    finally:
        ray.shutdown()
        cluster.shutdown()


def _measure(python: str, framework: str, nodes: int, rounds: int) -> dict[str, list[float]]:
    args = ["--child", framework, "--nodes", str(nodes), "--rounds", str(rounds)]
    return run_child(python, "bench.mesh", args, timeout=1200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ray-python", default="")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = run_ray if args.child == "ray" else run_actorflow
        report(run(args.nodes, args.rounds))
        return
    ray = ray_python(args.ray_python)
    frameworks = [("actorflow", sys.executable)]
    if ray and not args.no_ray:
        frameworks.append(("ray", ray))
    else:
        print("Ray: not measured (no interpreter with ray; give --ray-python PATH)")
    results: dict[str, Any] = {"rounds": args.rounds, "loadavg_before": _loadavg(), "rows": []}
    print(f"load average before: {results['loadavg_before']}")
    samples: dict[tuple[str, int], dict[str, list[float]]] = {}
    for nodes in (1, 2):
        for framework, python in frameworks:
            samples[(framework, nodes)] = _measure(python, framework, nodes, args.rounds)
    header = (
        f"{'nodes':>5} {'actors':>6} {'mesh/s':>9} {'list/s':>9} {'ray list/s':>10} "
        f"{'mesh/list':>9} {'mesh/ray':>8}"
    )
    print("broadcasts per second (medians), a no-op method, every result awaited")
    print(header)
    for nodes in (1, 2):
        ours = samples[("actorflow", nodes)]
        theirs = samples.get(("ray", nodes), {})
        for n in SIZES:
            mesh = statistics.median(ours[f"mesh {n}"])
            plain = statistics.median(ours[f"list {n}"])
            ray_rate = statistics.median(theirs[f"list {n}"]) if theirs else None
            row = {
                "nodes": nodes,
                "actors": n,
                "relays": ours["relays"][0],
                "mesh": {"median": mesh, "samples": ours[f"mesh {n}"]},
                "list": {"median": plain, "samples": ours[f"list {n}"]},
                "ray_list": None
                if ray_rate is None
                else {"median": ray_rate, "samples": theirs[f"list {n}"]},
                "mesh_vs_list": mesh / plain,
                "mesh_vs_ray": None if ray_rate is None else mesh / ray_rate,
            }
            results["rows"].append(row)
            ray_text = "-" if ray_rate is None else f"{ray_rate:,.0f}"
            vs_ray = "-" if ray_rate is None else f"{mesh / ray_rate:.1f}x"
            print(
                f"{nodes:>5} {n:>6} {mesh:>9,.0f} {plain:>9,.0f} {ray_text:>10} "
                f"{mesh / plain:>8.2f}x {vs_ray:>8}"
            )
    results["loadavg_after"] = _loadavg()
    print(f"load average after: {results['loadavg_after']}")
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"mesh-{stamp}.json", "mesh-latest.json"):
        with open(os.path.join(RESULTS, name), "w") as f:
            json.dump(results, f, indent=2)
    print(f"written: {os.path.join(RESULTS, f'mesh-{stamp}.json')}")


if __name__ == "__main__":
    main()
