"""Requests from a worker or driver to the system actors (GCS, raylet, store), from any thread.

Requests to the GCS ride out its restarts: while it cannot be reached they are sent again
(every GCS request is safe to repeat) for up to ``gcs_reconnect_seconds``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from actorflow._private import errors
from actorflow._private.config import Config
from actorflow._private.runtime import Runtime


class ControlClient:
    def __init__(self, runtime: Runtime, config: Config, gcs_address: str) -> None:
        self.runtime = runtime
        self.config = config
        self.gcs_address = gcs_address

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.runtime.loop_thread_id

    def gcs_request(self, target: str, method: str, payload: Any) -> asyncio.Future:
        """A request to the GCS, riding out a restart (loop thread only)."""
        return self.runtime.loop.create_task(self._gcs_retrying(target, method, payload))

    async def _gcs_retrying(self, target: str, method: str, payload: Any) -> Any:
        seconds = self.config.gcs_reconnect_seconds
        try:
            return await self.runtime.request_until_reachable(
                self.gcs_address, target, method, payload, seconds
            )
        except errors.PeerUnreachableError as exc:
            error = errors.PeerUnreachableError(
                f"the control store (GCS) at {self.gcs_address} could not be reached for "
                f"{seconds:g} s (gcs_reconnect_seconds): {exc}"
            )
            error.delivered = exc.delivered
            raise error from None

    async def _ask(self, address: str, target: str, method: str, payload: Any) -> Any:
        if address == self.gcs_address:
            return await self._gcs_retrying(target, method, payload)
        return await self.runtime.request(address, target, method, payload)

    async def request_from_any_loop(
        self, address: str, target: str, method: str, payload: Any
    ) -> Any:
        """A request awaited from any event loop: the runtime's own or a user's."""
        if asyncio.get_running_loop() is self.runtime.loop:
            return await self._ask(address, target, method, payload)
        future = asyncio.run_coroutine_threadsafe(
            self._ask(address, target, method, payload), self.runtime.loop
        )
        return await asyncio.wrap_future(future)

    def call_control(
        self, address: str, target: str, method: str, payload: Any, timeout: float | None = 30.0
    ) -> Any:
        """A request to a system actor, waited for from a user thread."""
        if self.on_loop_thread():
            raise errors.AsyncioContextError(
                f"this call blocks and cannot run on actorflow's own event loop (inside an async "
                f"actor or async task): use the async variant ({method})"
            )
        if address == self.gcs_address and timeout is not None:
            timeout += self.config.gcs_reconnect_seconds
        return asyncio.run_coroutine_threadsafe(
            self._ask(address, target, method, payload), self.runtime.loop
        ).result(timeout)
