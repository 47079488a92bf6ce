"""The web dashboard over HTTP: the login gate (token, session cookie), the JSON API being the
command line's ``--format json``, live updates by server-sent events, and the ways to start it
(``actorflow start --head``, ``init(include_dashboard=True)``). The browser tests are in
test_dashboard_browser.py."""

from __future__ import annotations

import contextlib
import io
import json
import os
import urllib.parse
import urllib.request

import pytest
from dashboard_helpers import Client, connected, populated_cluster
from helpers import poll_until, process_gone

import actorflow
from actorflow import cli


@pytest.fixture(scope="module")
def dash(tmp_path_factory):
    yield from populated_cluster(str(tmp_path_factory.mktemp("dashsession")))


def _logged_in(dash) -> Client:
    cluster, token, _ = dash
    client = Client(cluster.dashboard_url)
    status, _, _ = client.login(token)
    assert status == 303
    return client


def _cli_json(*args: str, address: str) -> object:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*args, "--address", address, "--format", "json"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.timeout(60)
def test_nothing_answers_without_the_token(dash):
    cluster, token, _ = dash
    client = Client(cluster.dashboard_url)
    status, headers, body = client.request("/api/actors")
    assert status == 401 and "not logged in" in json.loads(body)["error"]
    for page in ("/", "/actors", "/tasks?state=FAILED", "/logs"):
        status, headers, _ = client.request(page)
        location = urllib.parse.urlsplit(headers["Location"])
        assert status == 302 and location.path == "/login", page
        assert urllib.parse.parse_qs(location.query)["next"] == [page]
    status, headers, body = client.request("/login")
    assert status == 200 and b'name="token"' in body
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert client.request("/static/dashboard.css")[0] == 200  # what the login page needs

    # A wrong token: no session.
    status, headers, body = client.login("00" * 32)
    assert status == 401 and b"not the cluster" in body and "Set-Cookie" not in headers
    assert client.request("/api/actors")[0] == 401

    # The right one: a random session id in an HttpOnly, SameSite=Strict cookie.
    status, headers, _ = client.login(token)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    first = next(c.value for c in client.jar if c.name == "actorflow_session")
    assert token not in cookie and len(first) >= 40
    assert client.request("/api/actors")[0] == 200
    assert client.request("/actors")[0] == 200
    other = Client(cluster.dashboard_url)
    other.login(token.upper())  # the hex token, whatever its case
    assert next(c.value for c in other.jar if c.name == "actorflow_session") != first

    # After logging out, the old cookie opens nothing.
    assert client.request("/logout", {})[0] == 303
    stale = Client(cluster.dashboard_url)
    stale.jar.set_cookie(_cookie_with(next(c for c in other.jar), first))
    assert stale.request("/api/actors")[0] == 401

    # Back to a page of this server only, never elsewhere.
    for target in ("//evil.example/", "https://evil.example/", "/\\evil"):
        probe = Client(cluster.dashboard_url)
        status, headers, _ = probe.request("/login", {"token": token, "next": target})
        assert status == 303 and headers["Location"] == "/", target


def _cookie_with(template, value):
    import copy

    cookie = copy.copy(template)
    cookie.value = value
    return cookie


@pytest.mark.timeout(90)
def test_the_api_is_the_command_lines_json(dash):
    cluster, _, ids = dash
    client = _logged_in(dash)
    address = cluster.address
    pairs = [
        ("/api/actors", ["list", "actors"]),
        ("/api/jobs", ["list", "jobs"]),
        ("/api/supervisors", ["list", "supervisors"]),
        ("/api/tasks?name=square", ["list", "tasks", "--name", "square"]),
        ("/api/tasks?state=FAILED", ["list", "tasks", "--state", "FAILED"]),
        ("/api/task_summary", ["summary", "tasks"]),
        ("/api/logs", ["logs"]),
        ("/api/nodes", ["list", "nodes"]),
        ("/api/status", ["status"]),
        ("/api/object_store", ["memory", "--stats"]),
    ]
    for path, args in pairs:
        # The same rows (a figure that moves between the two reads is read again).
        poll_until(
            lambda path=path, args=args: client.json(path) == _cli_json(*args, address=address),
            timeout=20,
            message=path,
        )
    actors = {a["actor_id"]: a for a in client.json("/api/actors")}
    assert actors[ids["greeter"]]["name"] == "greeter"
    assert len(client.json("/api/tasks?name=square")) == 4
    (failed,) = client.json("/api/tasks?state=FAILED")
    assert failed["name"] == "fails" and failed["error_type"] == "TASK_EXECUTION_EXCEPTION"

    # The supervision tree: the child that was killed, restarted, with its history.
    (app,) = client.json("/api/supervisors")
    assert app["actor_id"] == ids["supervisor"] and app["label"] == "app"
    assert app["state"] == "ALIVE" and app["parent_id"] == "" and app["depth"] == 0
    db = next(c for c in app["children"] if c["name"] == "db")
    assert db["restarts"] == 1 and db["actor_id"] == ids["db"] and db["actor_state"] == "ALIVE"
    kinds = [(e["kind"], e["child"]) for e in app["events"]]
    assert ("failed", "db") in kinds and ("restarted", "db") in kinds

    # The command line's tables of the same rows.
    for args, expected in [
        (["list", "supervisors"], ["app", "one_for_one", "2/2 running", "restarted db"]),
        (["list", "jobs"], ["SUCCEEDED", "DRIVER"]),
        (["logs"], ["worker-", "node-"]),
    ]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main([*args, "--address", address]) == 0
        assert all(word in out.getvalue() for word in expected), (args, out.getvalue())

    # The log of an actor, as `actorflow logs --actor` prints it.
    status, headers, body = client.request("/api/log?actor=greeter&tail=5")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert body == b"hello, dashboard\n"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["logs", "--address", address, "--actor", "greeter", "--tail", "5"]) == 0
    assert out.getvalue().encode() == body

    # The Chrome trace, to download.
    status, headers, body = client.request("/api/timeline?download=1")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert sum(1 for e in json.loads(body) if e["ph"] == "X" and e["name"] == "square") == 4

    # Bad requests say what is wrong.
    status, _, body = client.request("/api/tasks?limit=many")
    assert status == 400 and "limit must be int" in json.loads(body)["error"]
    status, _, body = client.request("/api/bogus")
    assert status == 404 and "no view 'bogus'" in json.loads(body)["error"]
    status, _, body = client.request("/api/log?actor=nobody")
    assert status == 400 and "no actor with the id or name 'nobody'" in json.loads(body)["error"]


def _events(client: Client, query: str):
    """The data of the server-sent events of /api/events?query, one at a time."""
    request = urllib.request.Request(client.url + "/api/events?" + query)
    response = client.opener.open(request, timeout=30)
    assert response.headers["Content-Type"].startswith("text/event-stream")

    def read():
        with response:
            for line in response:
                if line.startswith(b"data: "):
                    yield json.loads(line[6:])

    return read()


@pytest.mark.timeout(90)
def test_live_updates_by_server_sent_events(dash):
    cluster, _, ids = dash
    client = _logged_in(dash)
    events = _events(client, "view=actors&view=status")
    first = [next(events), next(events)]
    assert {e["view"] for e in first} == {"actors", "status"}
    actors = next(e["data"] for e in first if e["view"] == "actors")
    doomed = next(a for a in actors if a["actor_id"] == ids["doomed"])
    assert doomed["state"] == "ALIVE"
    with connected(cluster):
        actorflow.kill(actorflow.get_actor("doomed"))
    for event in events:  # the next change says so, without asking again
        if event["view"] != "actors":
            continue
        row = next(a for a in event["data"] if a["actor_id"] == ids["doomed"])
        if row["state"] == "DEAD":
            assert "killed" in row["death_cause"]
            break
    assert Client(cluster.dashboard_url).request("/api/events?view=actors")[0] == 401


@pytest.mark.timeout(60)
def test_init_serves_the_dashboard_when_asked(make_cluster, capsys):
    info = make_cluster(num_cpus=1, include_dashboard=True, dashboard_port=0)
    assert info.dashboard_url and info["webui_url"] == info.dashboard_url
    assert f"View the dashboard at http://{info.dashboard_url}" in capsys.readouterr().err
    client = Client("http://" + info.dashboard_url)
    assert client.request("/api/nodes")[0] == 401
    token = open(os.path.join(info["session_dir"], "token")).read().strip()
    assert client.login(token)[0] == 303
    (node,) = client.json("/api/nodes")
    assert node["node_id"] == info["node_id"]
    pid = json.load(open(os.path.join(info["session_dir"], "dashboard.json")))["pid"]
    actorflow.shutdown()
    poll_until(lambda: process_gone(pid), timeout=15)
    assert not actorflow.init(num_cpus=1, _temp_dir=info["session_dir"] + "-2").dashboard_url
    actorflow.shutdown()
    with pytest.raises(ValueError, match="dashboard_port must be a port number"):
        actorflow.init(include_dashboard=True, dashboard_port=70000)


@pytest.mark.timeout(120)
def test_actorflow_start_head_serves_it_and_stop_ends_it(cli):
    out = cli.ok("start", "--head", "--port", "0", "--num-cpus", "1", "--dashboard-port", "0")
    line = next(x for x in out.splitlines() if x.startswith("Dashboard at http://127.0.0.1:"))
    url = line.split()[2]
    assert "log in with the cluster token" in line
    client = Client(url)
    assert client.request("/api/status")[0] == 401
    assert client.login(cli.token())[0] == 303
    assert client.json("/api/status")["gcs_address"].endswith(cli.gcs_address)
    pid = json.loads((cli.head_session() / "dashboard.json").read_text())["pid"]
    out = cli.ok("stop")
    assert f"Stopped the dashboard (pid {pid})" in out
    poll_until(lambda: process_gone(pid), timeout=15)

    out = cli.ok("start", "--head", "--port", "0", "--num-cpus", "1", "--no-dashboard")
    assert "Dashboard at" not in out
    assert not any(s.joinpath("dashboard.json").exists() for s in cli.sessions())
    args = cli_parser().parse_args(["start", "--head", "--include-dashboard", "false"])
    assert args.include_dashboard is False
    done = cli.run("start", "--head", "--include-dashboard", "maybe")
    assert done.returncode == 2 and "expected true or false" in done.stderr


def cli_parser():
    return cli.build_parser()
