"""What the dashboard tests share: a LocalCluster that serves the dashboard, with a few
detached actors, tasks and a supervisor made by a driver that has left (so that no test keeps a
driver connected), and a small HTTP client with a cookie jar."""

from __future__ import annotations

import http.cookiejar
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import actorflow
from actorflow.supervision import ChildSpec, Supervisor
from actorflow.util.local_cluster import LocalCluster


@actorflow.remote
class Greeter:
    def hello(self, who):
        print(f"hello, {who}", flush=True)
        return os.getpid()


class Worker:
    def ping(self):
        return "pong"


@actorflow.remote
def square(x):
    return x * x


@actorflow.remote
def fails():
    raise ValueError("on purpose")


def leave_the_shared_cluster() -> None:
    """The suite's shared embedded cluster ends (the next test that wants it starts another):
    these tests connect drivers to a LocalCluster of their own."""
    if actorflow.is_initialized():
        actorflow.shutdown()


def start_cluster(root: str) -> LocalCluster:
    cluster = LocalCluster(session_root=root)
    try:
        cluster.add_node(num_cpus=2, dashboard={"port": 0})
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


def populate(cluster: LocalCluster) -> dict[str, Any]:
    """Detached actors, finished and failed tasks and a supervision tree whose child was killed
    and restarted; the ids the tests look for."""
    with connected(cluster):
        greeter = Greeter.options(name="greeter", lifetime="detached").remote()
        actorflow.get(greeter.hello.remote("dashboard"))
        doomed = Greeter.options(name="doomed", lifetime="detached").remote()
        actorflow.get(doomed.hello.remote("soon dead"))
        assert actorflow.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
        try:
            actorflow.get(fails.remote())
        except ValueError:
            pass
        top = Supervisor.start(
            [ChildSpec("db", Worker), ChildSpec("cache", Worker)],
            name="app",
            lifetime="detached",
        )
        db = actorflow.get(top.get_child.remote("db"))
        actorflow.kill(db)
        children = _restarted(top)
        return {
            "greeter": greeter.actor_id,
            "doomed": doomed.actor_id,
            "supervisor": top.actor_id,
            "db": children,
        }


def _restarted(top: Any) -> str:
    from helpers import poll_until

    def restarted() -> Any:
        infos = actorflow.get(top.which_children.remote())
        db = next(i for i in infos if i.name == "db")
        return db.actor_id if db.restarts == 1 and db.state == "running" else None

    return str(poll_until(restarted, timeout=30))


@contextmanager
def connected(cluster: LocalCluster):
    actorflow.init(address=cluster.address, namespace="dashboard-tests")
    try:
        yield
    finally:
        actorflow.shutdown()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    """HTTP to the dashboard with a cookie jar; redirects are not followed (they are checked)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.url + path, data=body, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def json(self, path: str) -> Any:
        status, _, body = self.request(path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def login(self, token: str) -> tuple[int, dict, bytes]:
        return self.request("/login", {"token": token, "next": "/"})


def populated_cluster(root: str) -> Iterator[tuple[LocalCluster, str, dict[str, Any]]]:
    """For a module fixture: (cluster, token, ids) of a populated dashboard cluster in a session
    root of its own, ended after the module."""
    import pytest

    leave_the_shared_cluster()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTORFLOW_SESSION_ROOT", root)
        cluster = start_cluster(root)
        try:
            ids = populate(cluster)
            token = open(os.path.join(cluster.head["session_dir"], "token")).read().strip()
            yield cluster, token, ids
        finally:
            cluster.shutdown()
