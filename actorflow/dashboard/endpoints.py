"""The dashboard's API: ``/api/<view>`` is the JSON the command line prints with
``--format json`` (both build it with ``actorflow.util.state.listings.json_view``), ``/api/log``
the text ``actorflow logs`` prints, ``/api/events`` a stream of server-sent events carrying a
view's JSON each time it changes (the live pages)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from actorflow import exceptions
from actorflow._private.cluster.inspection import KeptConnection
from actorflow.dashboard import auth
from actorflow.util.state import get_log
from actorflow.util.state.listings import VIEWS, json_view

CONNECTION: web.AppKey[KeptConnection] = web.AppKey("connection", KeptConnection)
REFRESH: web.AppKey[float] = web.AppKey("refresh", float)  # seconds between live updates
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping", asyncio.Event)

_dumps = functools.partial(json.dumps, indent=2)  # as the command line prints it
_CLUSTER_ERRORS = (ConnectionError, exceptions.ActorflowError, TimeoutError)


class BadRequest(ValueError):
    """A query parameter that cannot be used (answered 400)."""


def _filters(name: str, query: Any) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for key, kind in VIEWS[name].filters.items():
        value = query.get(key)
        if value in (None, ""):
            continue
        try:
            filters[key] = kind(value)
        except ValueError:
            raise BadRequest(f"{key} must be {kind.__name__}, got {value!r}") from None
    return filters


async def _in_thread(app: web.Application, call: Callable[[], Any]) -> Any:
    """A blocking state query, on a thread, through the dashboard's kept connection."""
    connection = app[CONNECTION]

    def run() -> Any:
        with connection.active():
            return call()

    return await asyncio.to_thread(run)


async def build_view(app: web.Application, name: str, filters: dict[str, Any]) -> Any:
    return await _in_thread(app, lambda: json_view(name, None, **filters))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def view(request: web.Request) -> web.StreamResponse:
    name = request.match_info["view"]
    if name not in VIEWS:
        return _error(404, f"no view {name!r}: one of {', '.join(VIEWS)}")
    try:
        value = await build_view(request.app, name, _filters(name, request.query))
    except (BadRequest, ValueError) as exc:
        return _error(400, str(exc))
    except _CLUSTER_ERRORS as exc:
        return _error(503, f"the cluster did not answer: {exc}")
    response = web.json_response(value, dumps=_dumps)
    if name == "timeline" and request.query.get("download"):
        response.headers["Content-Disposition"] = 'attachment; filename="actorflow-timeline.json"'
    return response


def _int(query: Any, key: str, default: int | None) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{key} must be an int, got {value!r}") from None


async def log(request: web.Request) -> web.Response:
    """``/api/log?actor=ID|NAME`` (or ``task=ID``, ``pid=N``, ``filename=F&node=ID``,
    ``tail=N``): the text of the log, as ``actorflow logs`` prints it."""
    query = request.query
    try:
        tail = _int(query, "tail", 1000)
        pid = _int(query, "pid", None)

        def read() -> str:
            pieces = get_log(
                node_id=query.get("node") or None,
                filename=query.get("filename") or None,
                actor_id=query.get("actor") or None,
                task_id=query.get("task") or None,
                pid=pid,
                tail=-1 if tail is None else tail,
                errors="replace",
            )
            return "".join(pieces)

        text = await _in_thread(request.app, read)
    except (BadRequest, ValueError) as exc:
        return _error(400, str(exc))
    except _CLUSTER_ERRORS as exc:
        return _error(503, str(exc))
    return web.Response(text=text, content_type="text/plain")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``data: {"view": NAME, "data": ...}`` for each view named in the
    query (``?view=status&view=object_store``) at once, then each time it changes."""
    names = request.query.getall("view", [])
    unknown = [n for n in names if n not in VIEWS]
    if not names or unknown:
        return _error(400, f"name views to follow with ?view=, one of {', '.join(VIEWS)}")
    try:
        filters = {name: _filters(name, request.query) for name in names}
    except BadRequest as exc:
        return _error(400, str(exc))
    app = request.app
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    sessions, session_id = app[auth.SESSIONS], request.cookies.get(auth.COOKIE)
    sent: dict[str, str] = {}
    stopping = app[STOPPING]
    try:
        while not stopping.is_set() and sessions.valid(session_id):
            for name in names:
                try:
                    text = json.dumps(
                        {"view": name, "data": await build_view(app, name, filters[name])}
                    )
                except (ValueError, *_CLUSTER_ERRORS) as exc:
                    text = json.dumps({"view": name, "error": str(exc)})
                if sent.get(name) != text:
                    await response.write(f"data: {text}\n\n".encode())
                    sent[name] = text
            await response.write(b": still here\n\n")  # finds a closed connection out
            try:
                await asyncio.wait_for(stopping.wait(), app[REFRESH])
            except asyncio.TimeoutError:
                pass
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    return response


def setup(app: web.Application) -> None:
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/log", log)
    app.router.add_get("/api/{view}", view)
