"""The dashboard's application and process.

``python -m actorflow.dashboard --session-dir DIR --gcs-address ADDR [--host H] [--port P]``
(started by ``launcher.start_dashboard``): the cluster token comes in ``ACTORFLOW_TOKEN``; it
keeps one runtime connected to the cluster (``inspection.KeptConnection``) for every query,
serves on HOST:PORT (loopback by default), writes its info (url, pid) to ``--ready-file`` and
``<session>/dashboard.json``, and ends on SIGTERM or once the process ``--watch-pid``
(the GCS's, or the driver's of ``init()``) has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import pathlib
import signal
import sys

import uvloop
from aiohttp import web

from actorflow._private.cluster import session_dir
from actorflow._private.cluster.inspection import KeptConnection, Target
from actorflow._private.config import env_token
from actorflow.dashboard import auth, endpoints, pages

STATIC = pathlib.Path(__file__).with_name("static")
REFRESH_SECONDS = 1.0
logger = logging.getLogger("actorflow.dashboard")


@web.middleware
async def security_headers(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def make_app(
    connection: KeptConnection, token: bytes, refresh: float = REFRESH_SECONDS
) -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[endpoints.CONNECTION] = connection
    app[endpoints.REFRESH] = refresh
    app[endpoints.STOPPING] = asyncio.Event()
    auth.setup(app, token)  # its gate comes after the security headers: they go on every answer
    pages.setup(app)
    endpoints.setup(app)
    app.router.add_static("/static/", STATIC)

    async def stopping(app: web.Application) -> None:
        app[endpoints.STOPPING].set()  # the live streams end

    app.on_shutdown.append(stopping)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="actorflow-dashboard")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--log-path", default="")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8265)
    parser.add_argument(
        "--port-fallback", action="store_true", help="a taken port: take a free one instead"
    )
    parser.add_argument("--watch-pid", type=int, default=0)
    return parser.parse_args(argv)


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def _start_site(runner: web.AppRunner, args: argparse.Namespace) -> web.TCPSite:
    site = web.TCPSite(runner, args.host, args.port)
    try:
        await site.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or not args.port_fallback:
            raise OSError(
                exc.errno, f"the dashboard cannot listen on {args.host}:{args.port}: {exc}"
            ) from None
        logger.warning("port %s is taken: the dashboard takes a free one", args.port)
        site = web.TCPSite(runner, args.host, 0)
        await site.start()
    return site


async def serve(args: argparse.Namespace, token: bytes) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connection = KeptConnection(loop, Target(args.gcs_address, token, args.session_dir))
    await connection.start()
    runner = web.AppRunner(make_app(connection, token), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await _start_site(runner, args)
        port = int(runner.addresses[0][1])
        info = {
            "url": url_of(args.host, port),
            "host": args.host,
            "port": port,
            "pid": os.getpid(),
            "gcs_address": args.gcs_address,
            "dashboard": True,
            "session_dir": args.session_dir,
        }
        path = os.path.join(args.session_dir, "dashboard.json")
        session_dir.write_json(path, info)
        if args.ready_file:
            session_dir.write_json(args.ready_file, info)
        logger.warning("dashboard serving at %s (GCS %s)", info["url"], args.gcs_address)
        while not stop.is_set():
            if args.watch_pid and not session_dir.pid_running(args.watch_pid):
                logger.warning("process %s has ended: the dashboard stops", args.watch_pid)
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        try:
            os.unlink(path)
        except OSError:
            pass
    finally:
        await runner.cleanup()
        await connection.aclose()


def main(argv: list[str] | None = None) -> None:
    os.umask(0o077)
    args = parse_args(argv)
    token = env_token(consume=True)
    if token is None:
        sys.exit("actorflow dashboard: no cluster token (ACTORFLOW_TOKEN) in the environment")
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        uvloop.run(serve(args, token))
    except Exception as exc:
        print(f"actorflow dashboard: {exc}", file=sys.stderr)
        if args.ready_file:
            session_dir.write_json(args.ready_file, {"error": str(exc)})
        sys.exit(1)
