"""Prometheus metrics: every node's /metrics (scraped over loopback HTTP and parsed with
prometheus_client's parser), user metrics from tasks and actors, and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.request
from typing import Any

import pytest
from helpers import poll_until
from prometheus_client.parser import text_string_to_metric_families

import actorflow
from actorflow.util.metrics import Counter, Gauge, Histogram, MetricDefinitionError

pytestmark = pytest.mark.timeout(120)

DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "deploy", "grafana", "actorflow.json")


def scrape(address: str) -> dict[str, Any]:
    """{family name: family} of one /metrics endpoint (HOST:PORT)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """The sum of the samples named sample whose labels include labels (0 if none)."""
    total = 0.0
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@actorflow.remote
def square(x: int) -> int:
    return x * x


@actorflow.remote
def fails() -> None:
    raise ValueError("no")


@actorflow.remote
class Holder:
    def ping(self) -> int:
        return 1


def test_embedded_metrics_follow_tasks_and_actors(make_cluster: Any) -> None:
    info = make_cluster(num_cpus=2, _metrics_export_port=0)
    address = info["metrics_address"]
    assert address.startswith("127.0.0.1:") and info["metrics_export_port"] > 0
    before = scrape(address)
    assert value(before, "actorflow_resources", Name="CPU", State="AVAILABLE") == 2.0
    assert value(before, "actorflow_object_store_capacity_bytes") > 0
    assert value(before, "actorflow_cluster_active_nodes") == 1

    assert actorflow.get([square.remote(i) for i in range(10)]) == [i * i for i in range(10)]
    with pytest.raises(ValueError):
        actorflow.get(fails.remote())
    poll_until(
        lambda: value(scrape(address), "actorflow_tasks", Name="square", State="FINISHED") == 10,
        timeout=20,
    )
    now = poll_until(
        lambda: (
            (s := scrape(address))
            and value(s, "actorflow_tasks", Name="fails", State="FAILED") == 1
            and s
        ),
        timeout=20,
    )
    assert value(now, "actorflow_workers") >= 1
    assert value(now, "actorflow_gcs_storage_writes_total", Table="jobs") >= 1

    holder = Holder.remote()
    assert actorflow.get(holder.ping.remote()) == 1
    alive = scrape(address)
    assert value(alive, "actorflow_actors", Name="Holder", State="ALIVE") == 1
    assert value(alive, "actorflow_leases", Kind="actor") == 1
    assert value(alive, "actorflow_resources", Name="CPU", State="USED") == 0.0
    actorflow.kill(holder)
    poll_until(
        lambda: value(scrape(address), "actorflow_actors", Name="Holder", State="DEAD") == 1,
        timeout=20,
    )

    # The driver's own metrics show up on its embedded node; a clash of kinds is refused.
    Counter("driver_events", tag_keys=("kind",)).inc(2, tags={"kind": "x"})
    with pytest.raises(MetricDefinitionError, match="already defined"):
        Gauge("driver_events", tag_keys=("kind",)).set(1, tags={"kind": "x"})
    assert value(scrape(address), "actorflow_driver_events_total", kind="x") == 2


def test_bad_metric_names_and_tags_are_refused() -> None:
    with pytest.raises(ValueError, match="Empty name"):
        Counter("")
    with pytest.raises(MetricDefinitionError, match="invalid metric name '1st'"):
        Counter("1st")
    with pytest.raises(MetricDefinitionError, match="invalid metric name 'has space'"):
        Gauge("has space")
    with pytest.raises(MetricDefinitionError, match="invalid tag key 'bad-key'"):
        Gauge("fine", tag_keys=("bad-key",))
    with pytest.raises(TypeError, match="tag_keys should be a tuple"):
        Counter("fine", tag_keys=["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="boundaries argument should be provided"):
        Histogram("latency")
    with pytest.raises(ValueError, match="positive values"):
        Histogram("latency", boundaries=[0, 1])
    counter = Counter("requests", tag_keys=("route",))
    with pytest.raises(ValueError, match="Unrecognized tag key other"):
        counter.set_default_tags({"other": "x"})
    with pytest.raises(TypeError, match="Tag values must be str"):
        counter.set_default_tags({"route": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="Missing value for tag key"):
        counter.inc()
    with pytest.raises(ValueError, match="value must be >0"):
        counter.inc(0, tags={"route": "/"})
    with pytest.raises(ValueError, match="Unrecognized tag key nope"):
        counter.inc(tags={"route": "/", "nope": "x"})
    assert counter.set_default_tags({"route": "/"}) is counter
    assert counter.info["default_tags"] == {"route": "/"}


def test_port_given_to_init_must_be_a_port() -> None:
    with pytest.raises(ValueError, match="_metrics_export_port must be a port number"):
        actorflow.init(_metrics_export_port=-5)
    assert not actorflow.is_initialized()


@actorflow.remote(resources={"second": 1})
def record_on_second_node() -> str:
    counter = Counter("jobs_done", description="Jobs done.", tag_keys=("where",))
    counter.set_default_tags({"where": "second"})
    counter.inc()
    counter.inc(2.5)
    Gauge("queue_depth").set(7)
    histogram = Histogram("job_seconds", boundaries=[0.1, 1.0], tag_keys=("where",))
    histogram.observe(0.05, tags={"where": "second"})
    histogram.observe(0.5, tags={"where": "second"})
    histogram.observe(3.0, tags={"where": "second"})
    return actorflow.get_runtime_context().get_node_id()


def test_user_metrics_appear_on_their_nodes_endpoint(local_cluster: Any) -> None:
    head = local_cluster.add_node(num_cpus=1)
    second = local_cluster.add_node(num_cpus=1, resources={"second": 1})
    actorflow.init(address=local_cluster.address)
    assert actorflow.get(record_on_second_node.remote()) == second["node_id"]
    where = second["metrics_address"]
    assert where.startswith("127.0.0.1:") and where != head["metrics_address"]

    def recorded() -> dict[str, Any] | None:
        families = scrape(where)
        return families if value(families, "actorflow_jobs_done_total") == 3.5 else None

    families = poll_until(recorded, timeout=30)
    assert families["actorflow_jobs_done"].documentation == "Jobs done."
    assert value(families, "actorflow_queue_depth") == 7
    assert value(families, "actorflow_job_seconds_count", where="second") == 3
    assert value(families, "actorflow_job_seconds_bucket", where="second", le="0.1") == 1
    assert value(families, "actorflow_job_seconds_bucket", where="second", le="1.0") == 2
    assert value(families, "actorflow_job_seconds_sum", where="second") == pytest.approx(3.55)
    assert value(families, "actorflow_tasks", Name="record_on_second_node", State="RUNNING") == 0
    assert value(scrape(head["metrics_address"]), "actorflow_jobs_done_total") == 0
    assert value(families, "actorflow_node_info", NodeId=second["node_id"]) == 1

    # The GCS process serves its own: the actor table and its storage writes (SQLite here).
    gcs = scrape(local_cluster.gcs["metrics_address"])
    assert value(gcs, "actorflow_cluster_active_nodes") == 2
    assert value(gcs, "actorflow_gcs_storage_durable") == 1
    assert value(gcs, "actorflow_gcs_storage_writes_total", Table="nodes", Op="put") >= 2
    # `actorflow list nodes` shows where each node serves them.
    rows = {r["node_id"]: r for r in actorflow.util.state.node_rows()}
    assert rows[second["node_id"]]["metrics_address"] == where


def test_a_taken_metrics_port_fails_the_node_clearly(local_cluster: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(actorflow.exceptions.NodeStartError, match="already in use"):
            local_cluster.add_node(num_cpus=1, metrics_export_port=port)


def test_grafana_dashboard_queries_only_metrics_that_exist(make_cluster: Any) -> None:
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert panels and len({p["id"] for p in panels}) == len(panels)
    info = make_cluster(num_cpus=1, _metrics_export_port=0)
    actorflow.get(square.remote(2))
    families = poll_until(
        lambda: (
            (s := scrape(info["metrics_address"]))
            and value(s, "actorflow_tasks", State="FINISHED") >= 1
            and s
        ),
        timeout=20,
    )
    samples = {s.name for family in families.values() for s in family.samples}
    names = set(families) | samples
    for panel in panels:
        assert panel["type"] == "timeseries" and set(panel["gridPos"]) == {"h", "w", "x", "y"}
        for target in panel["targets"]:
            for metric in re.findall(r"actorflow_[a-z_]+", target["expr"]):
                family = re.sub(r"_(bucket|sum|count|total)$", "", metric)
                assert metric in names or family in families, (
                    f"panel {panel['title']!r} queries {metric}, which /metrics does not have"
                )


def test_cli_start_serves_metrics_on_the_port_given(cli: Any) -> None:
    with socket.socket() as probe:  # a port free now, for the head's node
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = cli.ok(
        "start", "--head", "--port", "0", "--num-cpus", "1", "--metrics-export-port", str(port)
    )
    assert f"Prometheus metrics at http://127.0.0.1:{port}/metrics" in out
    assert "(the GCS)" in out
    families = scrape(f"127.0.0.1:{port}")
    assert value(families, "actorflow_resources_total", Name="CPU") == 1
    (row,) = cli.json("list", "nodes")
    assert row["metrics_address"] == f"127.0.0.1:{port}"
    assert f"127.0.0.1:{port}" in cli.ok("status")
    done = cli.run("start", "--head", "--port", "0", "--metrics-export-port", "70000")
    assert done.returncode == 2 and "--metrics-export-port must be 0-65535" in done.stderr
