"""What TLS costs between nodes: the same 2-node cluster with and without ``--tls``.

    python -m bench.cluster_tls [--repeats 3] [--rounds 5] [--size-mib 256] [--calls 300]

Each repeat starts a fresh 2-node cluster on this machine (loopback) in a child interpreter,
once plaintext and once with TLS, in turn (so that the load of other processes falls on both
alike), and measures, from a driver on the first node:
  * transfer: bench.cluster_transfer's workload (an array put on the first node, pulled by a
    task pinned to the second), GB/s;
  * actor calls: a sync call to an actor on the second node, one at a time, calls/s;
  * pipelined actor calls: --calls calls in flight at once, then all awaited, calls/s;
  * remote tasks: a no-op task pinned to the second node, one at a time, tasks/s;
and, in one process (so less at the mercy of the scheduler on a loaded machine), the wire
alone: round trips of a 100-byte message and echoes of 8 MiB over one transports connection.
Figures are medians over every round of every repeat; results go to
bench/results/cluster-tls-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from bench.child import report, run_child
from bench.cluster_transfer import STORE_BYTES, _rounds

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SMALL_ROUND_SECONDS = 1.0


def _rate(fn, seconds: float) -> float:
    """Calls of fn per second over about seconds."""
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def _small_calls(api, affinity, rounds: int, calls: int) -> dict[str, list[float]]:
    @api.remote(num_cpus=0)
    class Far:
        def echo(self, x):
            return x

    @api.remote(num_cpus=1)
    def noop() -> int:
        return 1

    far = Far.options(scheduling_strategy=affinity).remote()
    there = noop.options(scheduling_strategy=affinity)
    api.get([far.echo.remote(b"warm"), there.remote()])
    out: dict[str, list[float]] = {"actor calls/s": [], "pipelined calls/s": [], "tasks/s": []}
    for _ in range(rounds):
        out["actor calls/s"].append(
            _rate(lambda: api.get(far.echo.remote(b"x" * 100)), SMALL_ROUND_SECONDS)
        )

        def batch() -> None:
            api.get([far.echo.remote(b"x" * 100) for _ in range(calls)])

        out["pipelined calls/s"].append(_rate(batch, SMALL_ROUND_SECONDS) * calls)
        out["tasks/s"].append(_rate(lambda: api.get(there.remote()), SMALL_ROUND_SECONDS))
    return out


async def _wire_round(tls: object, seconds: float) -> tuple[float, float]:
    import transports

    token = os.urandom(32)

    def echo(conn: transports.Connection) -> None:
        conn.set_handler(conn.send, lambda exc: None)

    server_tls = tls.server if tls is not None else None  # type: ignore[attr-defined]
    client_tls = tls.client if tls is not None else None  # type: ignore[attr-defined]
    async with await transports.listen(
        "tcp://127.0.0.1:0", echo, token=token, tls=server_tls
    ) as listener:
        conn = await transports.connect(listener.address, token=token, tls=client_tls)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.send([1, b"x" * 100])
            await conn.recv()
            count += 1
        trips = count / (time.perf_counter() - start)
        big = b"x" * (8 << 20)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.send(big)
            await conn.recv()
            count += 1
        gbps = count * 2 * len(big) / (time.perf_counter() - start) / 1e9
        conn.close()
    return trips, gbps


def run_wire(rounds: int) -> dict[str, dict[str, list[float]]]:
    """The transports alone, plaintext and TLS in turn, in this process."""
    import uvloop

    from actorflow._private.cluster import pki
    from transports import TLSConfig

    with tempfile.TemporaryDirectory(prefix="af-bench-wire-") as directory:
        tls = TLSConfig.from_dir(pki.create_head_dir(directory))
    out: dict[str, dict[str, list[float]]] = {
        mode: {"wire round trips/s": [], "wire echo GB/s": []} for mode in ("plain", "tls")
    }
    for _ in range(rounds):
        for mode in ("plain", "tls"):
            trips, gbps = uvloop.run(_wire_round(tls if mode == "tls" else None, 1.0))
            out[mode]["wire round trips/s"].append(trips)
            out[mode]["wire echo GB/s"].append(gbps)
    return out


def run(tls: bool, size: int, rounds: int, calls: int) -> dict[str, list[float]]:
    import actorflow
    from actorflow.util.local_cluster import LocalCluster
    from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with (
        tempfile.TemporaryDirectory(prefix="af-bench-tls-") as root,
        LocalCluster(session_root=root, tls=tls) as cluster,
    ):
        cluster.add_node(num_cpus=2, object_store_memory=STORE_BYTES)
        other = cluster.add_node(num_cpus=2, object_store_memory=STORE_BYTES)
        os.environ["ACTORFLOW_SESSION_ROOT"] = root
        actorflow.init(address=cluster.address)
        core = actorflow._private.worker.context.core_or_none()
        affinity = NodeAffinitySchedulingStrategy(other["node_id"], soft=False)

        def settle() -> None:  # the copy on the other node is freed before the next round
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and core.call_control(other["address"], "store", "stats", None)["objects"]
            ):
                time.sleep(0.02)

        try:
            figures = _rounds(actorflow, affinity, size, rounds, settle)
            figures.update(_small_calls(actorflow, affinity, rounds, calls))
            return figures
        finally:
            actorflow.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size_mib << 20
    if args.child:
        report(run(args.child == "tls", size, args.rounds, args.calls))
        return
    samples: dict[str, dict[str, list[float]]] = {"plain": {}, "tls": {}}
    loads = []
    for _ in range(args.repeats):
        for mode in ("plain", "tls"):
            loads.append(os.getloadavg()[0])
            child_args = ["--child", mode, "--rounds", str(args.rounds)]
            child_args += ["--size-mib", str(args.size_mib), "--calls", str(args.calls)]
            got = run_child(sys.executable, "bench.cluster_tls", child_args, timeout=900)
            for key, values in got.items():
                samples[mode].setdefault(key, []).extend(values)
    loads.append(os.getloadavg()[0])
    for mode, figures in run_wire(args.repeats * args.rounds).items():
        samples[mode].update(figures)
    keys = ["GB/s", "actor calls/s", "pipelined calls/s", "tasks/s"]
    keys += ["wire round trips/s", "wire echo GB/s"]
    medians = {mode: {k: statistics.median(samples[mode][k]) for k in keys} for mode in samples}
    results = {
        "repeats": args.repeats,
        "rounds": args.rounds,
        "bytes": size,
        "calls": args.calls,
        "load_average_1min": loads,
        "median": medians,
        "tls_over_plain": {k: medians["tls"][k] / medians["plain"][k] for k in keys},
        "samples": samples,
    }
    print(
        f"2 nodes on loopback, {args.size_mib} MiB transfers; medians of {args.repeats} "
        f"repeats x {args.rounds} rounds; load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"  {'':<20} {'plaintext':>12} {'TLS':>12} {'TLS/plain':>10}")
    for key in keys:
        plain, tls = medians["plain"][key], medians["tls"][key]
        print(f"  {key:<20} {plain:12.2f} {tls:12.2f} {tls / plain:9.2f}x")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "cluster-tls-latest.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
