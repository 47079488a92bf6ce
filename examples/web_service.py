"""An aiohttp web service whose request handlers await actor methods.

Demonstrates:
  * actorflow next to an asyncio web application: ``actorflow.init()`` before
    the server starts, the actors created in the app's ``on_startup`` hook,
    ``actorflow.shutdown()`` once the server has stopped;
  * request handlers that ``await`` actor method calls directly: ObjectRefs
    are awaitable, so handlers never block the server's event loop;
  * actors as the service's shared state: a ``Counter`` and a key-value
    ``KeyValueStore``; each actor runs one call at a time, so concurrent
    requests cannot lose updates;
  * structured concurrency: ``GET /report/{user}`` starts two tasks inside
    ``async with actorflow.scope() as s``; when one fails (an unknown user)
    or the client goes away, the other is cancelled remotely, so a failed
    request leaves no stray remote work (``GET /journal`` shows it).

Usage:
    python examples/web_service.py --port 8080    # serve on 127.0.0.1:8080
    python examples/web_service.py --self-test    # serve on a free port, call
                                                  # itself, print, exit 0

Endpoints (all JSON):
    GET  /health               {"status": "ok"}
    GET  /counter              {"value": n}
    POST /counter/increment    body {"by": k} (optional) -> {"value": n}
    GET  /kv                   {"keys": [...]}
    GET  /kv/{key}             {"key": ..., "value": ...}, or 404
    PUT  /kv/{key}             body {"value": ...} -> {"key": ..., "value": ...}
    DELETE /kv/{key}           {"key": ..., "deleted": true/false}
    GET  /report/{user}        {"profile": ..., "history": [...]}, or 404;
                               ?seconds=s: how long the history takes
    GET  /journal              {"entries": [...]}: how history loads ended

The server stops cleanly on SIGINT or SIGTERM.
"""

import argparse
import asyncio

import aiohttp
from aiohttp import web

import actorflow


@actorflow.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def get(self) -> int:
        return self.value


@actorflow.remote
class KeyValueStore:
    def __init__(self):
        self.data = {}

    def put(self, key: str, value) -> None:
        self.data[key] = value

    def get(self, key: str) -> tuple:
        """Return ``(found, value)``."""
        if key in self.data:
            return True, self.data[key]
        return False, None

    def delete(self, key: str) -> bool:
        if key not in self.data:
            return False
        del self.data[key]
        return True

    def keys(self) -> list:
        return sorted(self.data)


USERS = {"ada": {"name": "Ada Lovelace", "born": 1815}}


@actorflow.remote
class Journal:
    """Where the history loads write how they ended (started, finished, cancelled)."""

    def __init__(self):
        self.entries = []

    def record(self, entry: str) -> None:
        self.entries.append(entry)

    def read(self) -> list:
        return self.entries


@actorflow.remote
def load_profile(user: str) -> dict:
    return USERS[user]  # KeyError for an unknown user


@actorflow.remote
async def load_history(user: str, seconds: float, journal) -> list:
    try:
        await journal.record.remote(f"history of {user}: started")
        await asyncio.sleep(seconds)  # a slow query
    except asyncio.CancelledError:
        await journal.record.remote(f"history of {user}: cancelled")
        raise
    await journal.record.remote(f"history of {user}: finished")
    return [f"{user} logged in", f"{user} logged out"]


COUNTER = web.AppKey("counter", object)
JOURNAL = web.AppKey("journal", object)
STORE = web.AppKey("store", object)


# --- handlers ---------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_counter(request: web.Request) -> web.Response:
    value = await request.app[COUNTER].get.remote()
    return web.json_response({"value": value})


async def increment_counter(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else {}
    by = body.get("by", 1)
    if not isinstance(by, int):
        return web.json_response({"error": "by must be an integer"}, status=400)
    value = await request.app[COUNTER].increment.remote(by)
    return web.json_response({"value": value})


async def list_keys(request: web.Request) -> web.Response:
    keys = await request.app[STORE].keys.remote()
    return web.json_response({"keys": keys})


async def get_key(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    found, value = await request.app[STORE].get.remote(key)
    if not found:
        return web.json_response({"error": f"no such key: {key}"}, status=404)
    return web.json_response({"key": key, "value": value})


async def put_key(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    body = await request.json()
    if "value" not in body:
        return web.json_response({"error": 'body must be {"value": ...}'}, status=400)
    await request.app[STORE].put.remote(key, body["value"])
    return web.json_response({"key": key, "value": body["value"]})


async def delete_key(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    deleted = await request.app[STORE].delete.remote(key)
    return web.json_response({"key": key, "deleted": deleted})


async def report(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    seconds = float(request.query.get("seconds", "0.1"))
    try:
        # Both tasks belong to the scope: if the profile fails (or this handler is
        # cancelled because the client went away), the history is cancelled remotely
        # before the scope exits; otherwise the scope waits for both.
        async with actorflow.scope() as s:
            history = s.remote(load_history, user, seconds, request.app[JOURNAL])
            profile = s.remote(load_profile, user)
            body = {"profile": await profile, "history": await history}
    except KeyError:
        return web.json_response({"error": f"no such user: {user}"}, status=404)
    return web.json_response(body)


async def journal(request: web.Request) -> web.Response:
    return web.json_response({"entries": await request.app[JOURNAL].read.remote()})


# --- application ------------------------------------------------------------


async def start_actors(app: web.Application) -> None:
    app[COUNTER] = Counter.remote()
    app[STORE] = KeyValueStore.remote()
    app[JOURNAL] = Journal.remote()


def make_app() -> web.Application:
    app = web.Application()
    app.on_startup.append(start_actors)
    app.router.add_get("/health", health)
    app.router.add_get("/counter", get_counter)
    app.router.add_post("/counter/increment", increment_counter)
    app.router.add_get("/kv", list_keys)
    app.router.add_get("/kv/{key}", get_key)
    app.router.add_put("/kv/{key}", put_key)
    app.router.add_delete("/kv/{key}", delete_key)
    app.router.add_get("/report/{user}", report)
    app.router.add_get("/journal", journal)
    return app


async def self_test() -> None:
    """Serve on a free loopback port, make a few requests, print the answers."""
    actorflow.init()
    runner = web.AppRunner(make_app())
    await runner.setup()  # runs the on_startup hook: creates the actors
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        print(f"self-test server on {base}")

        async with aiohttp.ClientSession() as session:

            async def call(method: str, path: str, **kwargs):
                async with session.request(method, base + path, **kwargs) as resp:
                    body = await resp.json()
                print(f"{method} {path} -> {resp.status} {body}")
                return resp.status, body

            assert await call("GET", "/health") == (200, {"status": "ok"})
            assert await call("GET", "/counter") == (200, {"value": 0})

            # Ten concurrent increments: the actor runs them one at a time, so
            # each request sees a different value and none is lost.
            async def increment():
                async with session.post(base + "/counter/increment") as resp:
                    return (await resp.json())["value"]

            values = sorted(await asyncio.gather(*[increment() for _ in range(10)]))
            print(f"10 concurrent POST /counter/increment -> values {values}")
            assert values == list(range(1, 11))
            assert await call("POST", "/counter/increment", json={"by": 5}) == (200, {"value": 15})

            assert await call("PUT", "/kv/language", json={"value": "Python"}) == (
                200,
                {"key": "language", "value": "Python"},
            )
            assert await call("PUT", "/kv/answer", json={"value": 42}) == (
                200,
                {"key": "answer", "value": 42},
            )
            assert await call("GET", "/kv/answer") == (200, {"key": "answer", "value": 42})
            assert await call("GET", "/kv") == (200, {"keys": ["answer", "language"]})
            assert await call("DELETE", "/kv/answer") == (200, {"key": "answer", "deleted": True})
            status, _ = await call("GET", "/kv/answer")
            assert status == 404

            # A scope: the report of a known user waits for both tasks ...
            status, body = await call("GET", "/report/ada")
            assert status == 200 and body["history"] == ["ada logged in", "ada logged out"]
            # ... and a failed one cancels its slow history task before answering.
            status, _ = await call("GET", "/report/ghost?seconds=30")
            assert status == 404
            # The history task was cancelled: before it started, or while it slept.
            for _ in range(100):
                status, body = await call("GET", "/journal")
                ghost = [e for e in body["entries"] if "ghost" in e]
                if ghost != ["history of ghost: started"]:
                    break
                await asyncio.sleep(0.1)
            # (Its "started" note itself may have been cancelled in flight.)
            assert ghost in (
                [],
                ["history of ghost: cancelled"],
                ["history of ghost: started", "history of ghost: cancelled"],
            ), ghost
            print("no stray remote work after the failed request")
    finally:
        await runner.cleanup()
        actorflow.shutdown()
    print("self-test passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=8080, help="port to serve on, on 127.0.0.1 (default 8080)"
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="serve on a free port, query it, print the answers and exit",
    )
    args = parser.parse_args()

    if args.self_test:
        asyncio.run(self_test())
        return

    # Start actorflow first; run_app then runs the on_startup hook (which
    # creates the actors) and serves until SIGINT or SIGTERM.
    actorflow.init()
    try:
        web.run_app(
            make_app(),
            host="127.0.0.1",
            port=args.port,
            print=lambda message: print(message, flush=True),
        )
    finally:
        actorflow.shutdown()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
