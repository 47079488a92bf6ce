"""Serving a process's Prometheus registry at ``http://HOST:PORT/metrics`` with aiohttp, on the
process's own loop: a scrape runs the registry's collectors there, so they read the live state
of the raylet, store and GCS without locks or copies made ahead of time.

``/healthz`` answers 200 when the process is healthy and 503 otherwise, with a JSON body that
says why (a node: alive and registered with the GCS, not draining); Kubernetes probes use it.

The endpoint is plain HTTP without the cluster token (Prometheus scrapes it as it scrapes
Ray's): it shows counts and names, never values or code, and listens on the node's interface
(loopback unless the node was given another host).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger("actorflow.metrics")


class MetricsPortInUseError(OSError):
    pass


class MetricsServer:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.host = ""
        self.port = 0
        self._runner: Any = None
        # (healthy, a JSON-able body) for /healthz; None: healthy while it serves.
        self.health: Callable[[], tuple[bool, dict[str, Any]]] | None = None

    @property
    def address(self) -> str:
        """HOST:PORT it serves on ("" until started)."""
        return f"{self.host}:{self.port}" if self.port else ""

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics" if self.port else ""

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (0: a free port); MetricsPortInUseError if the port is taken."""
        from aiohttp import web  # imported here: only processes that serve metrics pay for it

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/", self._index)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortInUseError(
                    exc.errno, f"the metrics port {host}:{port} is already in use"
                ) from None
            raise
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.host = host
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._runner = runner

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = generate_latest(self.registry)
        except Exception as exc:  # a collector failed: say so instead of a bare 500
            logger.exception("collecting metrics failed")
            return web.Response(status=500, text=f"collecting metrics failed: {exc}\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        healthy, body = True, {"status": "ok", "reason": "serving"}
        if self.health is not None:
            try:
                healthy, body = self.health()
            except Exception as exc:  # a check that fails is an unhealthy answer, not a 500
                logger.exception("the health check failed")
                healthy, body = False, {"status": "unhealthy", "reason": f"check failed: {exc}"}
        return web.json_response(body, status=200 if healthy else 503)

    async def _index(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(text="actorflow metrics: see /metrics (and /healthz)\n")

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
