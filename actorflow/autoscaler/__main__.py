"""``python -m actorflow.autoscaler``: the autoscaler loop as a process of its own (the Kubernetes
manifests run it next to the head, deploy/kubernetes/autoscaler.yaml)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from actorflow._private.cluster.session_dir import read_token_file
from actorflow._private.config import TOKEN_VARIABLE
from actorflow.autoscaler.loop import Autoscaler
from actorflow.autoscaler.policy import Policy
from actorflow.autoscaler.providers import KubernetesProvider, LocalProvider, NodeProvider


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m actorflow.autoscaler",
        description="Scale worker nodes to the cluster's pending demand; remove idle ones.",
    )
    parser.add_argument("--address", required=True, help="the cluster's GCS, HOST:PORT")
    parser.add_argument(
        "--token-file", default="", help="the cluster token (hex) in a file (a mounted Secret)"
    )
    parser.add_argument("--provider", choices=["kubernetes", "local"], default="kubernetes")
    parser.add_argument("--deployment", default="actorflow-worker", help="(kubernetes)")
    parser.add_argument("--namespace", default="", help="(kubernetes; default: the pod's own)")
    parser.add_argument(
        "--label-selector",
        default="app.kubernetes.io/name=actorflow,app.kubernetes.io/component=worker",
        help="(kubernetes) the worker pods",
    )
    parser.add_argument("--worker-cpus", type=float, default=1.0, help="CPUs of one worker node")
    parser.add_argument("--worker-gpus", type=float, default=0.0, help="GPUs of one worker node")
    parser.add_argument(
        "--worker-resources", default="{}", help="custom resources of one worker node, JSON"
    )
    parser.add_argument("--min-workers", type=int, default=0)
    parser.add_argument("--max-workers", type=int, default=10)
    parser.add_argument("--idle-timeout-seconds", type=float, default=60.0)
    parser.add_argument("--interval-seconds", type=float, default=5.0)
    parser.add_argument(
        "--health-file", default="", help="touched after every round (for a liveness probe)"
    )
    return parser.parse_args(argv)


def _namespace(given: str) -> str:
    if given:
        return given
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        resources: dict[str, Any] = json.loads(args.worker_resources)
        if not isinstance(resources, dict):
            raise ValueError("not a JSON object")
        shape = {"CPU": args.worker_cpus, **resources}
        if args.worker_gpus:
            shape["GPU"] = args.worker_gpus
        policy = Policy(
            shape,
            min_workers=args.min_workers,
            max_workers=args.max_workers,
            idle_timeout_seconds=args.idle_timeout_seconds,
        )
        if args.token_file:
            # Held in this process only, where the state API looks for it.
            os.environ[TOKEN_VARIABLE] = read_token_file(args.token_file).hex()
    except ValueError as exc:
        print(f"actorflow autoscaler: {exc}", file=sys.stderr)
        return 2
    provider: NodeProvider
    if args.provider == "kubernetes":
        provider = KubernetesProvider(
            args.deployment, _namespace(args.namespace), label_selector=args.label_selector
        )
    else:
        provider = LocalProvider(
            args.address, num_cpus=args.worker_cpus, num_gpus=args.worker_gpus or None
        )
    scaler = Autoscaler(
        provider,
        policy,
        address=args.address,
        interval_seconds=args.interval_seconds,
        health_file=args.health_file,
    )
    signal.signal(signal.SIGTERM, lambda *_: scaler.stop(0))
    try:
        scaler.run()
    except KeyboardInterrupt:
        pass
    if isinstance(provider, LocalProvider):
        provider.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
