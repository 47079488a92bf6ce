"""DAGs and compiled graphs, actorflow and Ray side by side: ``python -m bench.dag``.

Three graphs of actors, each step ``x -> x`` on a small int:

  linear1   input -> a.step -> output                       (1 actor)
  linear3   input -> a.step -> b.step -> c.step -> output   (3 actors)
  fanout4   input -> w1/w2/w3.step -> sink.combine -> output (4 actors)

and for each, four ways of running it: compiled (``experimental_compile``) one execution at a
time (inflight 1) and with 8 executions in flight (inflight 8), the same DAG uncompiled
(``dag.execute``), and plain ``.remote()`` chains. Latency is per execution, from ``execute`` to
its ``get`` returning (median, p99); throughput is executions per second over the whole run.
Each framework runs in its own process (``--framework``); the orchestrator prints a table with
the actorflow/Ray ratios and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import deque

RAY_PYTHON = "/work/rayvenv/bin/python"
GRAPHS = ("linear1", "linear3", "fanout4")
MODES = (
    "compiled_inflight1",
    "compiled_inflight8",
    "compiled_sockets_inflight1",
    "uncompiled",
    "remote_chain",
)


def _stats(lat_ns: list[int], wall: float) -> dict:
    lat = sorted(lat_ns)
    return {
        "n": len(lat),
        "median_us": statistics.median(lat) / 1000,
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000,
        "throughput_per_s": len(lat) / wall,
    }


def _run_side(framework: str, n: int, n_slow: int) -> dict:
    if framework == "ray":
        import ray
        import ray.dag as dag_mod
    else:
        import actorflow as ray
        import actorflow.dag as dag_mod
    ray.init(num_cpus=8)

    @ray.remote
    class Stage:
        def step(self, x):
            return x

        def combine(self, *xs):
            return xs[0]

    def build(graph: str):
        if graph == "linear1":
            actors = [Stage.remote()]
        elif graph == "linear3":
            actors = [Stage.remote() for _ in range(3)]
        else:
            actors = [Stage.remote() for _ in range(4)]
        ray.get([a.step.remote(0) for a in actors])

        def make_dag():  # Ray compiles a DAG object once: one per compile
            with dag_mod.InputNode() as inp:
                if graph == "fanout4":
                    return actors[3].combine.bind(*[a.step.bind(inp) for a in actors[:3]])
                dag = inp
                for a in actors:
                    dag = a.step.bind(dag)
                return dag

        def chain(x):
            if graph == "fanout4":
                return actors[3].combine.remote(*[a.step.remote(x) for a in actors[:3]])
            ref = x
            for a in actors:
                ref = a.step.remote(ref)
            return ref

        return actors, make_dag, chain

    def one_at_a_time(submit, get, count: int) -> dict:
        for _ in range(min(200, count)):
            get(submit())
        lat = []
        start = time.perf_counter()
        for _ in range(count):
            t = time.perf_counter_ns()
            get(submit())
            lat.append(time.perf_counter_ns() - t)
        return _stats(lat, time.perf_counter() - start)

    def pipelined(submit, get, count: int, depth: int) -> dict:
        for _ in range(200):
            get(submit())
        lat, queue = [], deque()
        start = time.perf_counter()
        for _ in range(count):
            if len(queue) == depth:
                t0, ref = queue.popleft()
                get(ref)
                lat.append(time.perf_counter_ns() - t0)
            queue.append((time.perf_counter_ns(), submit()))
        while queue:
            t0, ref = queue.popleft()
            get(ref)
            lat.append(time.perf_counter_ns() - t0)
        return _stats(lat, time.perf_counter() - start)

    out: dict = {"framework": framework, "version": getattr(ray, "__version__", "?")}
    for graph in GRAPHS:
        actors, make_dag, chain = build(graph)
        dag = make_dag()
        rows: dict = {}
        for depth in (1, 8):
            compiled = make_dag().experimental_compile(_max_inflight_executions=depth)
            try:
                if depth == 1:
                    rows["compiled_inflight1"] = one_at_a_time(
                        lambda c=compiled: c.execute(1), ray.get, n
                    )
                else:
                    rows["compiled_inflight8"] = pipelined(
                        lambda c=compiled: c.execute(1), ray.get, n, depth
                    )
            except Exception as exc:  # recorded, the run goes on
                rows[f"compiled_inflight{depth}"] = {"error": repr(exc)[:200]}
            finally:
                compiled.teardown()
        if framework == "actorflow":  # what ends on different machines use, here on one
            compiled = make_dag().experimental_compile(_socket_channels=True)
            try:
                rows["compiled_sockets_inflight1"] = one_at_a_time(
                    lambda c=compiled: c.execute(1), ray.get, n
                )
            finally:
                compiled.teardown()
        rows["uncompiled"] = one_at_a_time(lambda d=dag: d.execute(1), ray.get, n_slow)
        rows["remote_chain"] = one_at_a_time(lambda c=chain: c(1), ray.get, n_slow)
        out[graph] = rows
        for a in actors:
            ray.kill(a)
    ray.shutdown()
    return out


def _load() -> float:
    return os.getloadavg()[0]


def _table(results: dict) -> str:
    af, ray = results.get("actorflow", {}), results.get("ray", {})
    lines = [
        "| graph | mode | actorflow median µs | p99 µs | exec/s | Ray median µs | p99 µs | "
        "exec/s | latency Ray/af | throughput af/Ray |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for graph in GRAPHS:
        for mode in MODES:
            a = af.get(graph, {}).get(mode, {})
            r = ray.get(graph, {}).get(mode, {})

            def cells(x: dict) -> list[str]:
                if "median_us" not in x:
                    return ["n/a", "", ""]
                return [
                    f"{x['median_us']:.0f}",
                    f"{x['p99_us']:.0f}",
                    f"{x['throughput_per_s']:,.0f}",
                ]

            ratio_l = ratio_t = ""
            if "median_us" in a and "median_us" in r:
                ratio_l = f"{r['median_us'] / a['median_us']:.2f}x"
                ratio_t = f"{a['throughput_per_s'] / r['throughput_per_s']:.2f}x"
            lines.append(
                f"| {graph} | {mode} | " + " | ".join(cells(a) + cells(r)) + f" | {ratio_l} | "
                f"{ratio_t} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("actorflow", "ray"), help="run one side here")
    parser.add_argument("--n", type=int, default=10_000, help="executions per compiled row")
    parser.add_argument(
        "--n-uncompiled", type=int, default=2_000, help="executions per uncompiled/remote row"
    )
    parser.add_argument("--ray-python", default=RAY_PYTHON)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--json", default="bench/results/dag_latest.json")
    args = parser.parse_args(argv)
    if args.framework:
        print(json.dumps(_run_side(args.framework, args.n, args.n_uncompiled)))
        return 0
    results: dict = {"load_before": _load(), "n": args.n, "n_uncompiled": args.n_uncompiled}
    sides = [("actorflow", sys.executable)]
    if not args.no_ray and os.path.exists(args.ray_python):
        sides.append(("ray", args.ray_python))
    for name, python in sides:
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        cmd = [python, "-m", "bench.dag", "--framework", name, "--n", str(args.n)]
        cmd += ["--n-uncompiled", str(args.n_uncompiled)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        try:
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            results[name] = {"error": proc.stderr[-2000:]}
            print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    results["load_after"] = _load()
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print(_table(results))
    print(f"load average before {results['load_before']:.2f}, after {results['load_after']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
