"""actorflow.util.state: Ray's state API (list_*, get_*, summarize_*) with Ray's rows.

Tasks that must still be running when listed wait for a file gate, so what is listed is decided
by the test. The cluster is the shared one (num_cpus=4) of tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from helpers import poll_until, touch, wait_for_file

import actorflow
from actorflow.exceptions import RayStateApiException, StateApiError
from actorflow.util import state
from actorflow.util.state import (
    get_actor,
    get_job,
    get_node,
    get_objects,
    get_placement_group,
    get_task,
    get_worker,
    list_actors,
    list_jobs,
    list_nodes,
    list_objects,
    list_placement_groups,
    list_tasks,
    list_workers,
    summarize_actors,
    summarize_objects,
    summarize_tasks,
)
from actorflow.util.state.common import ActorState, NodeState, TaskState

pytestmark = pytest.mark.timeout(90)


@actorflow.remote
class Keeper:
    def pid(self):
        return os.getpid()

    def hold(self, gate, started):
        touch(started, str(os.getpid()))
        wait_for_file(gate)
        return "held"


@actorflow.remote
def held_task(gate, started):
    touch(started, str(os.getpid()))
    wait_for_file(gate)
    return "done"


@actorflow.remote
def after(value):
    return value


def _gates(tmp_path, name):
    return str(tmp_path / f"{name}.gate"), str(tmp_path / f"{name}.started")


def _started_pid(path):
    wait_for_file(path)
    with open(path) as f:
        return int(f.read())


# -- rows ------------------------------------------------------------------------------------------


def test_nodes_have_rays_fields_read_as_attributes_or_as_a_dict(cluster):
    nodes = list_nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert isinstance(node, NodeState) and dataclasses.is_dataclass(node)
    assert node.is_head_node and node.state == "ALIVE" and node.node_ip == "127.0.0.1"
    assert node.resources_total["CPU"] == 4.0
    assert node["node_id"] == node.node_id == node.get("node_id")
    assert node.get("no_such_field", "d") == "d"
    with pytest.raises(KeyError):
        node["no_such_field"]
    assert node.asdict()["node_id"] == node.node_id
    assert node.start_time_ms is None  # a detail field, without detail=True
    assert list_nodes(detail=True)[0].start_time_ms > 0
    assert get_node(node.node_id).node_id == node.node_id
    assert get_node("0" * 16) is None


def test_actors_have_rays_fields_and_states(cluster):
    keeper = Keeper.options(name="state-keeper", namespace="state-ns").remote()
    keeper_pid = actorflow.get(keeper.pid.remote())
    rows = list_actors(filters=[("name", "=", "state-keeper")])
    assert len(rows) == 1
    row = rows[0]
    assert isinstance(row, ActorState)
    assert row.class_name == "Keeper" and row.state == "ALIVE"
    assert row.ray_namespace == "state-ns" and row.pid == keeper_pid
    assert row.node_id == list_nodes()[0].node_id
    assert row.job_id == actorflow.get_runtime_context().get_job_id()
    assert row.death_cause is None and row.num_restarts is None  # detail fields
    detailed = get_actor(row.actor_id)
    assert detailed.num_restarts == 0 and detailed.is_detached is False
    assert isinstance(detailed.required_resources, dict)
    actorflow.kill(keeper)
    poll_until(lambda: get_actor(row.actor_id).state == "DEAD", timeout=30)
    dead = get_actor(row.actor_id)
    assert dead.pid is None
    assert dead.death_cause["actor_died_error_context"]["error_message"]
    assert get_actor("f" * 32) is None


def test_jobs_and_workers(cluster):
    keeper = Keeper.remote()
    keeper_pid = actorflow.get(keeper.pid.remote())
    job_id = actorflow.get_runtime_context().get_job_id()
    mine = get_job(job_id)
    assert mine.status == "RUNNING" and mine.type == "DRIVER" and mine.start_time > 0
    assert job_id in {j.job_id for j in list_jobs(limit=1000)}
    workers = {w.pid: w for w in list_workers(limit=1000)}
    assert keeper_pid in workers
    worker = workers[keeper_pid]
    assert worker.is_alive and worker.worker_type == "WORKER" and worker.ip == "127.0.0.1"
    assert get_worker(worker.worker_id).pid == keeper_pid
    actorflow.kill(keeper)


def test_tasks_lists_what_runs_and_waits_now(cluster, tmp_path):
    gate, started = _gates(tmp_path, "task")
    ref = held_task.remote(gate, started)
    waiting = after.remote(ref)  # its argument is not ready
    task_pid = _started_pid(started)
    keeper = Keeper.remote()
    call_gate, call_started = _gates(tmp_path, "call")
    call = keeper.hold.remote(call_gate, call_started)
    call_pid = _started_pid(call_started)

    running = get_task(ref)
    assert isinstance(running, TaskState)
    assert running.task_id == ref.task_id() and "held_task" in running.name
    assert running.state == "RUNNING" and running.type == "NORMAL_TASK"
    assert running.worker_pid == task_pid and running.node_id == list_nodes()[0].node_id
    assert running.job_id == actorflow.get_runtime_context().get_job_id()
    assert get_task(waiting).state == "PENDING_ARGS_AVAIL"
    method = get_task(call.task_id())
    assert method.type == "ACTOR_TASK" and method.state == "RUNNING"
    assert method.worker_pid == call_pid and "hold" in method.name

    rows = list_tasks(filters=[("state", "=", "RUNNING")], limit=1000)
    assert {ref.task_id(), call.task_id()} <= {t.task_id for t in rows}
    summary = summarize_tasks()["cluster"]
    assert summary["summary_by"] == "func_name"
    assert summary["summary"][running.name]["state_counts"]["RUNNING"] >= 1
    assert summary["total_tasks"] >= 2 and summary["total_actor_tasks"] >= 1

    touch(gate)
    touch(call_gate)
    assert actorflow.get([ref, waiting, call], timeout=30) == ["done", "done", "held"]
    assert get_task(ref).state == "FINISHED"  # from the task events, once it has ended
    actorflow.kill(keeper)


def test_objects_one_row_per_reference(cluster):
    ref = actorflow.put(np.zeros(300_000, dtype=np.uint8))  # in shared memory
    rows = get_objects(ref.hex())
    assert rows and all(r.object_id == ref.hex() for r in rows)
    mine = [r for r in rows if r.pid == os.getpid()]
    assert len(mine) == 1
    row = mine[0]
    assert row.object_size >= 300_000 and row.task_status == "FINISHED"
    assert row.reference_type == "LOCAL_REFERENCE" and row.type == "DRIVER"
    assert row.ip == "127.0.0.1" and row.call_site == "disabled"
    assert ref.hex() in {o.object_id for o in list_objects(limit=10_000)}
    summary = summarize_objects()["cluster"]
    assert summary["total_objects"] >= 1 and summary["callsite_enabled"] is False
    assert summary["summary"]["disabled"]["ref_type_counts"]["LOCAL_REFERENCE"] >= 1
    assert get_objects("ab" * 20) is None
    del ref


def test_summarize_actors_counts_per_class_and_state(cluster):
    keepers = [Keeper.remote() for _ in range(2)]
    actorflow.get([k.pid.remote() for k in keepers])
    summary = summarize_actors()["cluster"]
    assert summary["summary_by"] == "class"
    assert summary["summary"]["Keeper"]["class_name"] == "Keeper"
    assert summary["summary"]["Keeper"]["state_counts"]["ALIVE"] >= 2
    assert summary["total_actors"] == len(list_actors(limit=100_000))
    for k in keepers:
        actorflow.kill(k)


def test_placement_groups_in_the_state_api(cluster):
    from actorflow.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 1}], name="state-api-group")
    assert pg.wait(30)
    (row,) = list_placement_groups(filters=[("placement_group_id", "=", pg.id)], detail=True)
    assert row.name == "state-api-group" and row.state == "CREATED"
    assert row["creator_job_id"] == actorflow.get_runtime_context().get_job_id()
    assert row.bundles[0]["unit_resources"] == {"CPU": 1.0} and row.bundles[0]["node_id"]
    assert get_placement_group(pg.id).placement_group_id == pg.id
    remove_placement_group(pg)
    assert get_placement_group(pg.id).state == "REMOVED"
    assert get_placement_group("a" * 32) is None


# -- filters, limits -------------------------------------------------------------------------------


def test_filters_and_limit(cluster):
    keepers = [Keeper.options(name=f"filtered-{i}").remote() for i in range(2)]
    actorflow.get([k.pid.remote() for k in keepers])
    alive = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
    assert alive and all(a.state == "ALIVE" for a in alive)
    assert {a.actor_id for a in alive} == {
        a.actor_id for a in list_actors(filters=[("state", "=", "alive")], limit=1000)
    }  # strings compare without regard to case, as Ray's
    others = list_actors(filters=[("class_name", "!=", "Keeper")], limit=1000)
    assert all(a.class_name != "Keeper" for a in others)
    both = list_actors(filters=[("class_name", "=", "Keeper"), ("name", "=", "filtered-1")])
    assert [a.name for a in both] == ["filtered-1"]
    assert len(list_actors(filters=[("state", "=", "ALIVE")], limit=1)) == 1
    assert list_nodes(filters=[("is_head_node", "=", "true")])[0].is_head_node  # "true": a bool
    assert list_nodes(filters=[("is_head_node", "=", False)]) == []
    for k in keepers:
        actorflow.kill(k)


@pytest.mark.parametrize(
    "filters, match",
    [
        ([("colour", "=", "red")], "Given filter column 'colour' is not supported"),
        ([("death_cause", "=", "x")], "filter on one of"),  # a field, not a filterable one
        ([("state", ">", "ALIVE")], "Unsupported filter predicate '>'"),
        ([("state", "=")], "a filter is a \\(key, predicate, value\\) tuple"),
        (["state=ALIVE"], "a filter is a"),
    ],
)
def test_bad_filters_are_named(cluster, filters, match):
    with pytest.raises(ValueError, match=match):
        list_actors(filters=filters)


def test_bad_arguments_are_named(cluster):
    with pytest.raises(ValueError, match="limit"):
        list_nodes(limit=-1)
    with pytest.raises(ValueError, match="an id is a non-empty str"):
        get_actor("")
    assert issubclass(RayStateApiException, StateApiError)


# -- actorflow's own rows still work ---------------------------------------------------------------


def test_actorflows_own_rows_keep_their_keys(cluster):
    keeper = Keeper.options(name="own-rows", namespace="own").remote()
    actorflow.get(keeper.pid.remote())
    rows = [a for a in state.actor_rows() if a["name"] == "own-rows"]
    assert rows[0]["namespace"] == "own" and rows[0]["state"] == "ALIVE"
    assert state.node_rows()[0]["is_head"]
    assert state.cluster_status()["actors"]["ALIVE"] >= 1
    assert all("where" in o for o in state.object_rows())
    actorflow.kill(keeper)
