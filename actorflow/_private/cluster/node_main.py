"""Entry point of the processes ``actorflow start`` runs in the background:
``python -m actorflow._private.cluster.node_main --session-dir DIR --ready-file PATH [options]``.

``--gcs``: the cluster's GCS alone, on ``--host``/``--port``, keeping its tables in
``--storage`` (reloaded when it restarts). Otherwise a node (raylet, object store, workers) that
joins the GCS at ``--address`` (``--head`` marks the head's own node). The cluster token comes from
``--token-file`` or in ``ACTORFLOW_TOKEN`` (never on the command line, where ``ps`` shows it).
Once serving, the process writes its info to ``--ready-file`` and to ``<session>/nodes/<id>.json``
(the GCS also to ``<session>/node.json``); SIGTERM or SIGINT end it (a node, with its workers:
with ``--drain-grace-seconds`` above 0, after draining, see Raylet.drain) and it exits 0; a
GCS that marks a node dead ends that node too, with exit code 1 (DEAD_EXIT_CODE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

import uvloop

from actorflow._private.cluster import session_dir
from actorflow._private.cluster.enrollment import EnrollmentService
from actorflow._private.config import Config, env_token
from actorflow._private.control.host import host_gcs
from actorflow._private.control.metrics import GCSCollector
from actorflow._private.control.storage import open_storage
from actorflow._private.fd_limit import raise_open_file_limit
from actorflow._private.node.metrics import NodeMetrics
from actorflow._private.node.services import NodeServices, node_resources
from actorflow._private.runtime import Runtime
from transports import TLSConfig

logger = logging.getLogger("actorflow.node")

DEAD_EXIT_CODE = 1  # the GCS declared this node dead: it did not end because it was asked to


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="actorflow-node")
    parser.add_argument("--gcs", action="store_true", help="run the GCS alone")
    parser.add_argument("--storage", default="", help="where the GCS keeps its tables")
    parser.add_argument("--head", action="store_true", help="this is the head's node")
    parser.add_argument("--address", default="", help="the GCS to join (a node)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--num-cpus", type=float, default=None)
    parser.add_argument("--num-gpus", type=float, default=None)
    parser.add_argument("--resources", default="{}")
    parser.add_argument("--object-store-memory", type=int, default=0)
    parser.add_argument(
        "--metrics-export-port", type=int, default=0, help="the port of /metrics (0: a free one)"
    )
    parser.add_argument(
        "--tls-dir", default="", help="TLS on every connection, with the certificates here"
    )
    parser.add_argument(
        "--drain-grace-seconds",
        type=float,
        default=0.0,
        help="on SIGTERM, drain first: running tasks get this long to finish (0: end at once)",
    )
    parser.add_argument("--token-file", default="", help="the cluster token, hex, in a file")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--log-path", default="", help="this process's log, served by the node")
    return parser.parse_args(argv)


async def serve_gcs(args: argparse.Namespace, token: bytes, stop: asyncio.Event) -> None:
    config = Config.from_env()
    # The GCS's port also takes peers without a certificate: members enrolling (enrollment.py).
    tls = TLSConfig.from_dir(args.tls_dir, require_client_cert=False) if args.tls_dir else None
    runtime = Runtime(
        asyncio.get_running_loop(), token, config.max_frame_size, config.connect_timeout, tls
    )
    if args.tls_dir:
        runtime.on_uncertified = EnrollmentService(token, args.tls_dir).serve
    storage = open_storage(args.storage)
    await runtime.start(f"tcp://{args.host}:{args.port}")
    gcs = host_gcs(runtime, config, storage)
    await gcs.recover_all()
    runtime.register_actor("core", _Pingable())
    # The GCS's /metrics: its tables and its own sampled requests (it is no node: node_id "").
    metrics = NodeMetrics(runtime, "")
    metrics.add_collector(GCSCollector(gcs))
    await metrics.server.start(args.host, args.metrics_export_port)
    info = {
        "gcs_address": runtime.address,
        "address": runtime.address,
        "pid": os.getpid(),
        "is_head": True,
        "gcs": True,
        "node_id": "gcs",
        "storage": args.storage,
        "session_dir": args.session_dir,
        "metrics_address": metrics.server.address,
        "tls": tls is not None,
    }
    session_dir.write_json(os.path.join(args.session_dir, "nodes", "gcs.json"), info)
    session_dir.write_node_info(args.session_dir, info)
    if args.ready_file:
        session_dir.write_json(args.ready_file, info)
    logger.warning("GCS serving at %s (storage %s)", runtime.address, args.storage or "memory")
    await stop.wait()
    gcs.stop()
    await metrics.server.aclose()
    await runtime.aclose()
    storage.close()


class _Pingable:
    """Answers the pings of processes that check the GCS is up."""

    def handle_ping(self, payload: object, call: object) -> bool:
        return True


async def serve_node(args: argparse.Namespace, token: bytes, stop: asyncio.Event) -> int:
    config = Config.from_env()
    if args.object_store_memory:
        config = config.replace(object_store_memory=args.object_store_memory)
    resources = node_resources(
        args.num_cpus, args.num_gpus, json.loads(args.resources), config.memory_resource_fraction
    )
    tls = TLSConfig.from_dir(args.tls_dir) if args.tls_dir else None
    runtime = Runtime(
        asyncio.get_running_loop(), token, config.max_frame_size, config.connect_timeout, tls
    )
    await runtime.start(f"tcp://{args.host}:{args.port}")
    node = NodeServices(
        runtime,
        config,
        resources=resources,
        session_dir=args.session_dir,
        gcs_address=args.address,
        token=token,
        is_head=args.head,
        metrics_port=args.metrics_export_port,
        tls_dir=args.tls_dir,
        log_path=args.log_path,
    )
    await node.start()
    assert node.raylet is not None
    declared_dead: list[str] = []

    def dead(reason: str) -> None:
        declared_dead.append(reason)
        stop.set()

    node.raylet.on_node_dead = dead
    info = node.info()
    path = os.path.join(args.session_dir, "nodes", f"{node.node_id}.json")
    session_dir.write_json(path, info)
    if args.ready_file:
        session_dir.write_json(args.ready_file, info)
    logger.warning("node %s serving at %s (GCS %s)", node.node_id, runtime.address, args.address)
    await stop.wait()
    if not declared_dead and args.drain_grace_seconds > 0:
        logger.warning(
            "node %s drains (up to %g s for its running tasks)",
            node.node_id,
            args.drain_grace_seconds,
        )
        left = await node.raylet.drain("the node process got SIGTERM", args.drain_grace_seconds)
        logger.warning("node %s drained (%d task worker(s) ended unfinished)", node.node_id, left)
    await node.shutdown()
    await runtime.aclose()
    try:
        os.unlink(path)
    except OSError:
        pass
    return DEAD_EXIT_CODE if declared_dead else 0


async def serve(args: argparse.Namespace, token: bytes) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.gcs:
        await serve_gcs(args, token, stop)
        return 0
    return await serve_node(args, token, stop)


def main(argv: list[str] | None = None) -> None:
    os.umask(0o077)  # what this process writes (GCS tables, spill files) is this user's only
    raise_open_file_limit()
    args = parse_args(argv)
    token = env_token(consume=True)  # so that no process this one starts inherits it
    if args.token_file:
        try:
            token = session_dir.read_token_file(args.token_file)
        except ValueError as exc:
            sys.exit(f"actorflow node: {exc}")
    if token is None:
        sys.exit("actorflow node: no cluster token (--token-file or ACTORFLOW_TOKEN)")
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code = uvloop.run(serve(args, token))
    except Exception as exc:
        print(f"actorflow node: {exc}", file=sys.stderr)
        if args.ready_file:
            session_dir.write_json(args.ready_file, {"error": str(exc)})
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
