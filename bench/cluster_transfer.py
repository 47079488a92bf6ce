"""Cross-node object transfer: a 1 GiB numpy array made on one node, read by a task on another.

    python -m bench.cluster_transfer [--rounds 5] [--size-mib 1024] [--ray-python PATH] [--no-ray]
                                     [--tls]

A 2-node cluster on this machine (loopback); the driver joins the first node and puts a fresh
array there each round (not timed), then times a task pinned to the second node that takes the
array as its argument and returns its last element: the time is the pull of the object into the
second node's store (in chunks, over the nodes' TCP connection) plus one task round trip. Figures
are GB/s (10^9 bytes per second), the median of --rounds rounds. Ray (from --ray-python, or
/work/rayvenv/bin/python if it exists) runs the same workload on a 2-node
``ray.cluster_utils.Cluster``, in its own interpreter. Results go to
bench/results/cluster-transfer-latest.json. --tls runs actorflow's cluster with TLS
(``start --head --tls``); ``python -m bench.cluster_tls`` compares the two.
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
STORE_BYTES = 4 << 30  # each node's object store, both frameworks


def _rounds(api, affinity, size: int, rounds: int, settle) -> dict[str, list[float]]:
    import numpy as np

    @api.remote(num_cpus=1)
    def last(x) -> float:
        return float(x[-1])

    there = last.options(scheduling_strategy=affinity)
    api.get(there.remote(np.zeros(8)))  # the worker on the other node is up
    out: dict[str, list[float]] = {"GB/s": [], "seconds": []}
    count = size // 8
    for index in range(rounds):
        ref = api.put(np.full(count, float(index)))  # a fresh object every round
        start = time.perf_counter()
        assert api.get(there.remote(ref)) == float(index)
        elapsed = time.perf_counter() - start
        out["seconds"].append(elapsed)
        out["GB/s"].append(count * 8 / elapsed / 1e9)
        del ref
        settle()
    return out


def run_actorflow(size: int, rounds: int, tls: bool = False) -> dict[str, list[float]]:
    import actorflow
    from actorflow.util.local_cluster import LocalCluster
    from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with (
        tempfile.TemporaryDirectory(prefix="af-bench-") as root,
        LocalCluster(session_root=root, tls=tls) as cluster,
    ):
        cluster.add_node(num_cpus=2, object_store_memory=STORE_BYTES)
        other = cluster.add_node(num_cpus=2, object_store_memory=STORE_BYTES)
        os.environ["ACTORFLOW_SESSION_ROOT"] = root  # where init finds the cluster's token
        actorflow.init(address=cluster.address)
        core = actorflow._private.worker.context.core_or_none()

        def settle() -> None:  # the copy on the other node is freed before the next round
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and core.call_control(other["address"], "store", "stats", None)["objects"]
            ):
                time.sleep(0.02)

        try:
            return _rounds(
                actorflow,
                NodeAffinitySchedulingStrategy(other["node_id"], soft=False),
                size,
                rounds,
                settle,
            )
        finally:
            actorflow.shutdown()


def run_ray(size: int, rounds: int) -> dict[str, list[float]]:
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": STORE_BYTES}
    )
    other = cluster.add_node(num_cpus=2, object_store_memory=STORE_BYTES)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        return _rounds(
            ray,
            NodeAffinitySchedulingStrategy(other.node_id, soft=False),
            size,
            rounds,
            lambda: time.sleep(0.5),
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


def _child(framework: str, size: int, rounds: int, tls: bool) -> None:
    if framework == "ray":
        report(run_ray(size, rounds))
    else:
        report(run_actorflow(size, rounds, tls))


def _measure(
    python: str, framework: str, size: int, rounds: int, tls: bool
) -> dict[str, list[float]]:
    args = ["--child", framework, "--size-mib", str(size >> 20), "--rounds", str(rounds)]
    return run_child(python, "bench.cluster_transfer", args + ["--tls"] * tls, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--ray-python", default="")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--tls", action="store_true", help="actorflow's cluster with TLS")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size_mib << 20
    if args.child:
        _child(args.child, size, args.rounds, args.tls)
        return
    ray = ray_python(args.ray_python)
    frameworks = [("actorflow", sys.executable)]
    if ray and not args.no_ray:
        frameworks.append(("ray", ray))
    results: dict = {"rounds": args.rounds, "bytes": size, "tls": args.tls, "figures": {}}
    for framework, python in frameworks:
        samples = _measure(python, framework, size, args.rounds, args.tls)
        results["figures"][framework] = {
            "GB/s": statistics.median(samples["GB/s"]),
            "seconds": statistics.median(samples["seconds"]),
            "samples": samples,
        }
    print(f"cross-node transfer of a {size >> 20} MiB array (median of {args.rounds} rounds)")
    for framework, row in results["figures"].items():
        spread = ", ".join(f"{v:.2f}" for v in row["samples"]["GB/s"])
        print(
            f"  {framework:<10} {row['GB/s']:6.2f} GB/s  ({row['seconds']:.3f} s; rounds: {spread})"
        )
    if "ray" in results["figures"]:
        ratio = results["figures"]["actorflow"]["GB/s"] / results["figures"]["ray"]["GB/s"]
        results["ratio"] = ratio
        print(f"  actorflow / ray: {ratio:.2f}x")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "cluster-transfer-latest.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
