"""Entry point of a node process started by ``actorflow start``:
``python -m actorflow._private.node_main --session-dir DIR --ready-file PATH [options]``.

With ``--head`` it hosts the GCS too and listens on ``--host``/``--port``; otherwise it joins the
GCS at ``--address``. The cluster token comes in ``ACTORFLOW_TOKEN`` (never on the command line,
where ``ps`` shows it). Once serving it writes its info to ``--ready-file`` and to
``<session>/nodes/<node id>.json`` (the head also to ``<session>/node.json``); SIGTERM or SIGINT
end it and its workers; a GCS that marks it dead ends it too.
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

from actorflow._private import session_dir
from actorflow._private.config import Config
from actorflow._private.node import NodeServices, host_gcs, node_resources
from actorflow._private.runtime import Runtime

logger = logging.getLogger("actorflow.node")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="actorflow-node")
    parser.add_argument("--head", action="store_true")
    parser.add_argument("--address", default="", help="the GCS to join (not with --head)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--num-cpus", type=float, default=None)
    parser.add_argument("--num-gpus", type=float, default=None)
    parser.add_argument("--resources", default="{}")
    parser.add_argument("--object-store-memory", type=int, default=0)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--ready-file", default="")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, token: bytes) -> None:
    config = Config.from_env()
    if args.object_store_memory:
        config = config.replace(object_store_memory=args.object_store_memory)
    resources = node_resources(args.num_cpus, args.num_gpus, json.loads(args.resources))
    loop = asyncio.get_running_loop()
    runtime = Runtime(loop, token, config.max_frame_size, config.connect_timeout)
    await runtime.start(f"tcp://{args.host}:{args.port if args.head else 0}")
    gcs = host_gcs(runtime, config) if args.head else None
    gcs_address = runtime.address if args.head else args.address
    node = NodeServices(runtime, config, resources=resources, session_dir=args.session_dir,
                        gcs_address=gcs_address, token=token, is_head=args.head)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    assert node.raylet is not None
    node.raylet.on_node_dead = lambda reason: stop.set()
    info = node.info()
    session_dir.write_json(os.path.join(args.session_dir, "nodes", f"{node.node_id}.json"), info)
    if args.head:
        session_dir.write_node_info(args.session_dir, info)
    if args.ready_file:
        session_dir.write_json(args.ready_file, info)
    logger.warning("node %s serving at %s (GCS %s)", node.node_id, runtime.address, gcs_address)
    await stop.wait()
    if gcs is not None:
        gcs.stop()
    await node.shutdown()
    await runtime.aclose()
    try:
        os.unlink(os.path.join(args.session_dir, "nodes", f"{node.node_id}.json"))
    except OSError:
        pass


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    token = bytes.fromhex(os.environ.pop("ACTORFLOW_TOKEN"))
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        uvloop.run(serve(args, token))
    except Exception as exc:
        print(f"actorflow node: {exc}", file=sys.stderr)
        if args.ready_file:
            session_dir.write_json(args.ready_file, {"error": str(exc)})
        sys.exit(1)


if __name__ == "__main__":
    main()
