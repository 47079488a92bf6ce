"""The dashboard's HTML: one shell per page (a nav bar, a title, an empty frame), filled in the
browser by ``static/dashboard.js`` from the JSON API and kept live by server-sent events. No
inline script or style, so the Content-Security-Policy can forbid them."""

from __future__ import annotations

from html import escape
from typing import NamedTuple

from aiohttp import web


class Page(NamedTuple):
    path: str
    title: str
    view: str  # what dashboard.js renders (data-view)
    intro: str


PAGES = [
    Page("/", "Overview", "overview", "Nodes, their resources used/total and the object store."),
    Page("/actors", "Actors", "actors", "Every actor the GCS knows, dead ones too."),
    Page("/tasks", "Tasks", "tasks", "Task and actor-call attempts, from the task events."),
    Page("/jobs", "Jobs", "jobs", "The drivers' jobs, finished ones too."),
    Page("/objects", "Objects", "objects", "Every object in the cluster (as actorflow memory)."),
    Page("/logs", "Logs", "logs", "The log file of every worker, on every node."),
    Page("/supervision", "Supervision", "supervision", "Supervisors, their children, restarts."),
    Page("/timeline", "Timeline", "timeline", "The task attempts that ran, per node and worker."),
]

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · actorflow</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
</head>"""


def _nav(active: str) -> str:
    links = "".join(
        f'<a href="{p.path}"{" class=active" if p.view == active else ""}>{p.title}</a>'
        for p in PAGES
    )
    return (
        '<nav><span class="brand">actorflow</span>'
        f'<span class="links">{links}</span>'
        '<span class="live" id="live">connecting…</span>'
        '<form method="post" action="/logout"><button type="submit">Log out</button></form>'
        "</nav>"
    )


def page(p: Page) -> web.Response:
    body = (
        _HEAD.format(title=escape(p.title))
        + f'<body data-view="{p.view}">'
        + _nav(p.view)
        + f'<main><h1>{escape(p.title)}</h1><p class="intro">{escape(p.intro)}</p>'
        + '<div id="content"><p class="muted">Loading…</p></div></main>'
        + '<script src="/static/dashboard.js"></script></body></html>'
    )
    return web.Response(text=body, content_type="text/html")


def login(next_path: str, error: str = "", status: int = 200) -> web.Response:
    message = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        _HEAD.format(title="Log in")
        + '<body class="login"><main><form method="post" action="/login" class="card">'
        + "<h1>actorflow dashboard</h1>"
        + "<p>Give the cluster token: the contents of the <code>token</code> file in the "
        + "cluster's session directory (<code>actorflow start</code> prints where it is).</p>"
        + message
        + '<label for="token">Cluster token</label>'
        + '<input type="password" id="token" name="token" autocomplete="off" autofocus required>'
        + f'<input type="hidden" name="next" value="{escape(next_path)}">'
        + '<button type="submit" id="login">Log in</button>'
        + "</form></main></body></html>"
    )
    return web.Response(text=body, content_type="text/html", status=status)


def setup(app: web.Application) -> None:
    for p in PAGES:

        async def show(request: web.Request, p: Page = p) -> web.Response:
            return page(p)

        app.router.add_get(p.path, show)
