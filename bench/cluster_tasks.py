"""Tasks per second on a cluster of one node and of two nodes on this machine.

    python -m bench.cluster_tasks [--rounds 5] [--ray-python PATH] [--no-ray]

Two workloads, each on a 1-node cluster (2 CPUs) and a 2-node cluster (2 x 2 CPUs), driven
from a driver that joins it by address:
  * sleep tasks: 200 tasks that each sleep 20 ms (num_cpus=1) - bound by how many CPUs the
    cluster offers, so two nodes should double it;
  * tiny tasks: 1,000 no-op tasks - bound by the driver's and workers' CPU; on a 2-core
    machine a second node adds no cores, so this shows what spreading costs.
Each framework runs in its own interpreter (Ray from --ray-python, or /work/rayvenv/bin/python
if it exists); figures are medians of --rounds rounds; results go to
bench/results/cluster-tasks-<timestamp>.json (and cluster-tasks-latest.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from bench.child import ray_python, report, run_child

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SLEEP_TASKS, SLEEP_SECONDS, TINY_TASKS = 200, 0.02, 1000


def _workloads(api, rounds: int) -> dict[str, list[float]]:
    @api.remote(num_cpus=1)
    def sleeper() -> int:
        time.sleep(SLEEP_SECONDS)
        return 1

    @api.remote(num_cpus=1)
    def tiny() -> int:
        return 1

    api.get([sleeper.remote() for _ in range(8)])  # warm the workers up
    api.get([tiny.remote() for _ in range(200)])
    out: dict[str, list[float]] = {"sleep tasks/s": [], "tiny tasks/s": []}
    for _ in range(rounds):
        start = time.perf_counter()
        api.get([sleeper.remote() for _ in range(SLEEP_TASKS)])
        out["sleep tasks/s"].append(SLEEP_TASKS / (time.perf_counter() - start))
        start = time.perf_counter()
        api.get([tiny.remote() for _ in range(TINY_TASKS)])
        out["tiny tasks/s"].append(TINY_TASKS / (time.perf_counter() - start))
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
            return _workloads(actorflow, rounds)
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
        return _workloads(ray, rounds)
    finally:
        ray.shutdown()
        cluster.shutdown()


def _child(framework: str, nodes: int, rounds: int) -> None:
    figures = (run_ray if framework == "ray" else run_actorflow)(nodes, rounds)
    report(figures)


def _measure(python: str, framework: str, nodes: int, rounds: int) -> dict[str, list[float]]:
    args = ["--child", framework, "--nodes", str(nodes), "--rounds", str(rounds)]
    return run_child(python, "bench.cluster_tasks", args, timeout=900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ray-python", default="")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.nodes, args.rounds)
        return
    ray = ray_python(args.ray_python)
    frameworks = [("actorflow", sys.executable)]
    if ray and not args.no_ray:
        frameworks.append(("ray", ray))
    results: dict = {"rounds": args.rounds, "figures": {}}
    for nodes in (1, 2):
        for framework, python in frameworks:
            samples = _measure(python, framework, nodes, args.rounds)
            for workload, values in samples.items():
                key = f"{workload}, {nodes} node{'s' if nodes > 1 else ''}"
                results["figures"].setdefault(key, {})[framework] = {
                    "median": statistics.median(values),
                    "samples": values,
                }
    print(f"{'workload':<28} {'actorflow':>12} {'ray':>12} {'ratio':>8}")
    for key, row in results["figures"].items():
        af = row["actorflow"]["median"]
        ray = row.get("ray", {}).get("median")
        ratio = f"{af / ray:.1f}x" if ray else "-"
        ray_text = "-" if ray is None else f"{ray:,.0f}"
        print(f"{key:<28} {af:>12,.0f} {ray_text:>12} {ratio:>8}")
    for framework, _ in frameworks:
        for workload in ("sleep tasks/s", "tiny tasks/s"):
            one = results["figures"][f"{workload}, 1 node"][framework]["median"]
            two = results["figures"][f"{workload}, 2 nodes"][framework]["median"]
            results.setdefault("two_vs_one", {}).setdefault(framework, {})[workload] = two / one
            print(f"{framework}: {workload} two nodes / one node = {two / one:.2f}x")
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"cluster-tasks-{stamp}.json", "cluster-tasks-latest.json"):
        with open(os.path.join(RESULTS, name), "w") as f:
            json.dump(results, f, indent=2)
    print(f"written: {os.path.join(RESULTS, f'cluster-tasks-{stamp}.json')}")


if __name__ == "__main__":
    main()
