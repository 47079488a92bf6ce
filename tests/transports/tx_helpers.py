"""Test helpers for the transports suite (a uniquely named module, not conftest, so
other test directories' conftest files cannot shadow it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import transports

TOKEN = b"test-cluster-token"


async def wait_for(fut: asyncio.Future[Any] | Any, timeout: float = 10.0) -> Any:
    return await asyncio.wait_for(fut, timeout)


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until ``cond()`` holds (for state with no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


class Server:
    """A listener that records connections and their fate.

    ``echo=True`` installs a handler that sends every message straight back.
    """

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.listener: transports.Listener | None = None
        self.conns: asyncio.Queue[transports.Connection] = asyncio.Queue()
        self.accepted: list[transports.Connection] = []
        self.closes: dict[transports.Connection, list[BaseException | None]] = {}
        self.closed: asyncio.Queue[tuple[transports.Connection, BaseException | None]] = (
            asyncio.Queue()
        )

    @property
    def address(self) -> str:
        assert self.listener is not None
        return self.listener.address

    def on_connection(self, conn: transports.Connection) -> None:
        self.accepted.append(conn)
        self.closes[conn] = []
        if self.echo:

            def on_close(exc: BaseException | None, conn: transports.Connection = conn) -> None:
                self.closes[conn].append(exc)
                self.closed.put_nowait((conn, exc))

            conn.set_handler(conn.send, on_close)
        self.conns.put_nowait(conn)

    async def start(self, address: str, **kwargs: Any) -> Server:
        self.listener = await transports.listen(
            address, self.on_connection, token=kwargs.pop("token", TOKEN), **kwargs
        )
        return self

    async def next_conn(self) -> transports.Connection:
        return await wait_for(self.conns.get())

    async def next_close(self) -> tuple[transports.Connection, BaseException | None]:
        return await wait_for(self.closed.get())


class Collector:
    """Callback-mode sink: gathers messages, resolves futures on count / close."""

    def __init__(self, expect: int = 1) -> None:
        loop = asyncio.get_running_loop()
        self.messages: list[Any] = []
        self.expect = expect
        self.done: asyncio.Future[list[Any]] = loop.create_future()
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        self.close_calls = 0

    def on_message(self, msg: Any) -> None:
        self.messages.append(msg)
        if len(self.messages) >= self.expect and not self.done.done():
            self.done.set_result(self.messages)

    def on_close(self, exc: BaseException | None) -> None:
        self.close_calls += 1
        if not self.closed.done():
            self.closed.set_result(exc)

    def attach(self, conn: transports.Connection) -> Collector:
        conn.set_handler(self.on_message, self.on_close)
        return self


async def round_trip(address: str, msg: Any = "ping", **kwargs: Any) -> Any:
    """Connect to an echo server, send one message, return the echo."""
    async with await transports.connect(address, token=TOKEN, **kwargs) as conn:
        conn.send(msg)
        return await wait_for(conn.recv())
