"""The runtime's event loop on a thread of its own, so user threads never block it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "actorflow-runtime") -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run coro on the loop and wait for its result from the calling thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def finish(self, coro: Coroutine[Any, Any, Any], what: str, timeout: float = 15.0) -> None:
        """Run a last coroutine (a shutdown) on the loop, log its failure, then stop."""
        try:
            self.run(coro, timeout)
        except Exception:
            logging.getLogger("actorflow").exception("error while %s", what)
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self._cancel_remaining_tasks(), timeout)
        except Exception:
            pass  # the loop is going away regardless
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()

    @staticmethod
    async def _cancel_remaining_tasks() -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
