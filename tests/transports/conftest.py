"""Shared fixtures for the transports tests."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import uvloop

# The package is not installed in the dev venv; make the repo root importable.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tx_helpers import Server  # noqa: E402  (after the sys.path fix above)


# Every async test runs on both loops: the runtime uses uvloop, asyncio is the reference.
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # pytest's tmp_path can exceed the ~107-byte AF_UNIX path limit.
    path = Path(tempfile.mkdtemp(prefix="aft-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["tcp", "unix", "inproc"])
def scheme(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def address(scheme: str, short_tmp: Path) -> str:
    """A fresh address to listen on, for the parametrized backend."""
    return {
        "tcp": "tcp://127.0.0.1:0",
        "unix": f"unix://{short_tmp}/s.sock",
        "inproc": "inproc://",
    }[scheme]


@pytest.fixture
async def server(address: str) -> AsyncIterator[Server]:
    srv = await Server().start(address)
    yield srv
    for conn in srv.accepted:
        conn.close()
    assert srv.listener is not None
    await srv.listener.aclose()
