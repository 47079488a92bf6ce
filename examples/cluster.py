"""A program on a multi-node cluster: the same code as on one machine, only init() changes.

By default it starts a two-node cluster on this machine (two node processes on loopback, as
`actorflow start --head` and `actorflow start --address ...` would) and ends it afterwards; with
--address HOST:PORT it joins a cluster you started yourself:

    actorflow start --head --num-cpus 2
    actorflow start --address 127.0.0.1:6380 --num-cpus 2 --resources '{"ssd": 1}'
    python examples/cluster.py --address 127.0.0.1:6380
    actorflow stop

Demonstrates:
  * ``scheduling_strategy="SPREAD"``: tasks spread over every node;
  * a custom resource (``resources={"ssd": 1}``) that pins work to the node that has it;
  * a large numpy array made on one node and read on another (pulled between the nodes'
    object stores);
  * an actor placed on a chosen node with ``NodeAffinitySchedulingStrategy``.
"""

import argparse
import collections
import os
import tempfile
import time

import numpy as np

import actorflow
from actorflow.util.local_cluster import LocalCluster
from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@actorflow.remote
def where_am_i(seconds: float) -> str:
    time.sleep(seconds)
    return actorflow.get_runtime_context().get_node_id()


@actorflow.remote(resources={"ssd": 1})
def load_shard(rows: int) -> np.ndarray:
    """Pretend to read a shard from the node's fast disk."""
    return np.arange(rows, dtype=np.float64)


@actorflow.remote
class Greeter:
    def hello(self) -> str:
        return f"hello from node {actorflow.get_runtime_context().get_node_id()[:8]}"


def main(address: str) -> None:
    actorflow.init(address=address)
    nodes = [n for n in actorflow.nodes() if n["Alive"]]
    print(f"cluster: {len(nodes)} nodes, {actorflow.cluster_resources()['CPU']:g} CPUs")
    for node in nodes:
        print(
            f"  node {node['NodeID'][:8]} {'(head)' if node['IsHead'] else '      '} "
            f"{node['Address']} {node['Resources']}"
        )

    spread = where_am_i.options(scheduling_strategy="SPREAD")
    counts = collections.Counter(actorflow.get([spread.remote(0.1) for _ in range(8)]))
    print(
        f"SPREAD: 8 tasks ran on {len(counts)} nodes: "
        + ", ".join(f"{node[:8]} x{n}" for node, n in sorted(counts.items()))
    )

    shard = load_shard.remote(5_000_000)  # 40 MB, made on the node with the "ssd" resource
    total = actorflow.get(shard).sum()
    print(f"shard of 5,000,000 rows from the ssd node, summed here: {total:,.0f}")

    other = next(n for n in nodes if not n["IsHead"]) if len(nodes) > 1 else nodes[0]
    greeter = Greeter.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(other["NodeID"], soft=False)
    ).remote()
    print(actorflow.get(greeter.hello.remote()))
    actorflow.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", help="HOST:PORT of a running cluster's head")
    args = parser.parse_args()
    if args.address:
        main(args.address)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="actorflow-example-") as root,
            LocalCluster(session_root=root) as cluster,
        ):
            cluster.add_node(num_cpus=2)
            cluster.add_node(num_cpus=2, resources={"ssd": 1})
            os.environ["ACTORFLOW_SESSION_ROOT"] = root  # where init() finds the token
            main(cluster.address)
