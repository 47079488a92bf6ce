"""Who may see the dashboard: whoever knows the cluster token.

The login page asks for it (the hex string in the session directory's ``token`` file); the
answer is compared in constant time (``hmac.compare_digest``) and, if right, a random session id
goes back in a cookie that scripts cannot read (HttpOnly) and that no other site's page sends
(SameSite=Strict). Every page and API answers only with a live session: an API with 401 and a
JSON error, a page by sending the browser to the login page.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from actorflow.dashboard import pages

COOKIE = "actorflow_session"
SESSION_SECONDS = 12 * 3600
OPEN_PATHS = ("/login", "/static/", "/favicon.ico")  # reachable without a session

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Sessions:
    """The logged-in browsers: session id -> when it expires (monotonic seconds)."""

    def __init__(self, token: bytes, lifetime: float = SESSION_SECONDS) -> None:
        self._expected = token.hex().encode()
        self._lifetime = lifetime
        self._sessions: dict[str, float] = {}

    def check_token(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().lower().encode(), self._expected)

    def open(self) -> str:
        self._sweep()
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = time.monotonic() + self._lifetime
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        expires = self._sessions.get(session_id)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self._sessions[session_id]
            return False
        return True

    def close(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)

    def _sweep(self) -> None:
        now = time.monotonic()
        for session_id in [s for s, t in self._sessions.items() if t < now]:
            del self._sessions[session_id]


SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)


def _safe_next(target: str | None) -> str:
    """Only a path on this server (not //elsewhere or a full URL) to go back to after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith(OPEN_PATHS) or request.app[SESSIONS].valid(request.cookies.get(COOKIE)):
        return await handler(request)
    if path.startswith("/api/"):
        return web.json_response(
            {"error": "not logged in: open the dashboard's /login page and give the cluster token"},
            status=401,
        )
    raise web.HTTPFound("/login?next=" + quote(request.path_qs, safe=""))


async def login_page(request: web.Request) -> web.Response:
    return pages.login(_safe_next(request.query.get("next")))


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token, target = str(form.get("token", "")), _safe_next(str(form.get("next", "/")))
    sessions = request.app[SESSIONS]
    if not sessions.check_token(token):
        return pages.login(target, error="That is not the cluster's token.", status=401)
    response = web.Response(status=303, headers={"Location": target})
    response.set_cookie(
        COOKIE,
        sessions.open(),
        httponly=True,
        samesite="Strict",
        path="/",
        max_age=SESSION_SECONDS,
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].close(request.cookies.get(COOKIE))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response


def setup(app: web.Application, token: bytes) -> None:
    app[SESSIONS] = Sessions(token)
    app.middlewares.append(require_session)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
