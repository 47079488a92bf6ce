"""Placement groups through the public API (Ray's ``ray.util.placement_group``): reservation
with each strategy over several nodes, ready()/wait()/await, groups that wait for resources or
nodes, tasks and actors in bundles, capture of child tasks, removal, lifetimes, a GCS restart,
and Ray's validation errors; plus the sans-IO policy and bundle table."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import msgpack
import pytest

import actorflow
from actorflow import exceptions
from actorflow._private.control import bundle_policy
from actorflow._private.node.bundles import BundleTable
from actorflow._private.node.resources import NodeResources
from actorflow._private.protocol import placement_groups as pgs
from actorflow._private.protocol import raylet
from actorflow._private.protocol.message import decode, spec_of
from actorflow.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from actorflow.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(120)


def in_group(pg, index=-1, capture=None):
    return PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=index, placement_group_capture_child_tasks=capture
    )


@actorflow.remote(num_cpus=1)
def node_of() -> str:
    return actorflow.get_runtime_context().get_node_id()


@actorflow.remote(num_cpus=0)
def current_group_id() -> str | None:
    group = get_current_placement_group()
    return None if group is None else group.id


@actorflow.remote(num_cpus=1)
class Where:
    def node(self) -> str:
        return actorflow.get_runtime_context().get_node_id()

    def group(self) -> str | None:
        group = get_current_placement_group()
        return None if group is None else group.id

    def child_group(self) -> str | None:
        return actorflow.get(current_group_id.remote(), timeout=30)


# -- the policy and the node's bundle table, without a cluster ----------------------------------


def test_policy_places_each_strategy():
    three = {"a": {"CPU": 2.0}, "b": {"CPU": 2.0}, "c": {"CPU": 4.0}}
    one_cpu = [{"CPU": 1.0}] * 3
    packed = bundle_policy.place(one_cpu, "PACK", three)
    assert packed is not None and len(set(packed.values())) == 1  # all fit on c
    assert bundle_policy.place(one_cpu, "STRICT_PACK", three) == {0: "c", 1: "c", 2: "c"}
    spread = bundle_policy.place(one_cpu, "SPREAD", three)
    assert spread is not None and sorted(spread.values()) == ["a", "b", "c"]
    strict = bundle_policy.place(one_cpu, "STRICT_SPREAD", three)
    assert strict is not None and sorted(strict.values()) == ["a", "b", "c"]
    # Too many bundles for STRICT_SPREAD; SPREAD reuses nodes; PACK spills over nodes.
    assert bundle_policy.place([{"CPU": 1.0}] * 4, "STRICT_SPREAD", three) is None
    assert bundle_policy.place([{"CPU": 1.0}] * 4, "SPREAD", three) is not None
    big = bundle_policy.place([{"CPU": 2.0}] * 3, "PACK", three)
    assert big is not None and list(big.values()).count("c") == 2
    assert bundle_policy.place([{"CPU": 2.0}] * 3, "STRICT_PACK", three) is None
    assert not bundle_policy.feasible([{"GPU": 1.0}], "PACK", three)
    # Rescheduling: a STRICT_SPREAD group keeps its placed bundles' nodes out.
    again = bundle_policy.place(one_cpu, "STRICT_SPREAD", three, placed={0: "a", 1: "b"})
    assert again == {2: "c"}
    assert bundle_policy.place(one_cpu, "STRICT_PACK", three, placed={0: "b", 1: "b"}) == {2: "b"}


def test_bundle_table_reserves_all_or_nothing_and_gives_back():
    node = NodeResources({"CPU": 4, "GPU": 2})
    table = BundleTable(node)
    assert not table.prepare("g1", [(0, {"CPU": 2}), (1, {"CPU": 3})])  # 5 > 4: none taken
    assert node.available == {"CPU": 4.0, "GPU": 2.0}
    assert table.prepare("g1", [(0, {"CPU": 2, "GPU": 1}), (1, {"CPU": 1})])
    assert table.prepare("g1", [(0, {"CPU": 2, "GPU": 1})])  # resent: not taken twice
    assert node.available == {"CPU": 1.0, "GPU": 1.0}
    assert table.candidates("g1", -1, {"CPU": 1}) == []  # not committed yet
    table.commit("g1", [0, 1])
    assert [b.index for b in table.candidates("g1", -1, {"CPU": 2})] == [0]
    bundle = table.candidates("g1", 0, {"GPU": 1})[0]
    assert bundle.pool.take_gpus(1) == bundle.gpu_ids  # a lease sees the node's GPU index
    assert len(table.release("g1")) == 2
    assert node.available == {"CPU": 4.0, "GPU": 2.0} and node.gpu_free == [1.0, 1.0]


GROUP_MESSAGES = [
    pgs.CreatePlacementGroup("p" * 28, "name", "ns", [{"CPU": 1.0}], "PACK", True, "01", "a"),
    pgs.RemovePlacementGroup("p" * 28),
    pgs.WaitPlacementGroup("p" * 28, 1.5),
    pgs.PlacementGroupTable(""),
    pgs.GetNamedPlacementGroup("name", "ns"),
    pgs.LocateBundles("p" * 28),
    raylet.PrepareBundles("p" * 28, [[0, {"CPU": 1.0}]]),
    raylet.CommitBundles("p" * 28, [0, 1]),
    raylet.CancelBundles("p" * 28, None, "removed"),
    raylet.ReclaimBundles([["p" * 28, 0]]),
]


@pytest.mark.parametrize("sent", GROUP_MESSAGES, ids=lambda m: type(m).__name__)
def test_group_messages_travel_as_plain_arrays(sent):
    wire = msgpack.unpackb(msgpack.packb(sent, use_bin_type=True))
    assert isinstance(wire, list) and decode(type(sent), wire) == sent
    with pytest.raises(exceptions.MalformedMessageError, match=spec_of(type(sent)).method):
        decode(type(sent), [7] * len(sent))


# -- validation, as Ray's ----------------------------------------------------------------------


def test_validation_errors_name_the_problem():
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="must be a list"):
        placement_group({"CPU": 1})
    with pytest.raises(ValueError, match="empty dictionary or resources with only 0"):
        placement_group([{"CPU": 1}, {}])
    with pytest.raises(ValueError, match="only 0 values"):
        placement_group([{"CPU": 0, "GPU": 0}])
    with pytest.raises(ValueError, match="negative"):
        placement_group([{"CPU": -1}])
    with pytest.raises(ValueError, match="Invalid placement group strategy"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(ValueError, match="placement_group_bundle_index"):
        PlacementGroupSchedulingStrategy(None, placement_group_bundle_index=-2)
    with pytest.raises(TypeError, match="PlacementGroup"):
        PlacementGroupSchedulingStrategy("not a group")


# -- one node: the embedded cluster ------------------------------------------------------------


def test_ready_wait_await_table_and_names(make_cluster, poll_until):
    make_cluster(num_cpus=4, namespace="team")
    pg = placement_group([{"CPU": 1}, {"CPU": 2}], strategy="PACK", name="trainers")
    assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 2.0}] and pg.bundle_count == 2
    assert actorflow.get(pg.ready(), timeout=30) == pg
    ready, _ = actorflow.wait([pg.ready()], timeout=30)
    assert len(ready) == 1
    assert pg.wait(10) is True

    async def awaited():
        return await pg.ready()

    assert asyncio.run(awaited()) == pg
    row = placement_group_table(pg)
    assert row["placement_group_id"] == pg.id and row["name"] == "trainers"
    assert row["state"] == "CREATED" and row["strategy"] == "PACK"
    assert row["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 2.0}}
    node_id = actorflow.get_runtime_context().get_node_id()
    assert row["bundles_to_node_id"] == {0: node_id, 1: node_id}
    assert row["stats"]["scheduling_state"] == "FINISHED"
    assert pg.id in placement_group_table()
    rows = actorflow.util.state.list_placement_groups()
    assert [r["state"] for r in rows if r["placement_group_id"] == pg.id] == ["CREATED"]
    assert get_placement_group("trainers") == pg
    assert actorflow.util.get_placement_group("trainers").bundle_specs == pg.bundle_specs
    with pytest.raises(ValueError, match="already taken"):
        placement_group([{"CPU": 1}], name="trainers")
    with pytest.raises(ValueError, match="Failed to look up"):
        get_placement_group("nobody")
    assert actorflow.available_resources().get("CPU", 0) == 1.0
    remove_placement_group(pg)
    with pytest.raises(ValueError, match="removed"):
        pg.wait(5)
    assert placement_group_table(pg)["state"] == "REMOVED"
    with pytest.raises(ValueError, match="Failed to look up"):
        get_placement_group("trainers")  # the name is free again
    poll_until(lambda: actorflow.available_resources()["CPU"] == 4.0, timeout=30)
    assert isinstance(pg, PlacementGroup)
    assert get_current_placement_group() is None  # a driver is in no group


def test_tasks_and_actors_run_in_bundles_and_removal_kills_them(make_cluster, poll_until):
    make_cluster(num_cpus=4, num_gpus=2, resources={"disk": 2})
    pg = placement_group([{"CPU": 1, "GPU": 1}, {"CPU": 2, "disk": 1}])
    assert pg.wait(30)
    assert actorflow.available_resources().get("CPU") == 1.0
    # Tasks in the group use its bundles, not the node's last free CPU.
    refs = [node_of.options(scheduling_strategy=in_group(pg)).remote() for _ in range(6)]
    assert len(set(actorflow.get(refs, timeout=60))) == 1
    assert (
        actorflow.get(current_group_id.options(scheduling_strategy=in_group(pg, 1)).remote())
        == pg.id
    )

    @actorflow.remote(num_cpus=0, num_gpus=1)
    def gpus() -> str:
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")

    seen = actorflow.get(gpus.options(scheduling_strategy=in_group(pg, 0)).remote(), timeout=30)
    assert seen in ("0", "1")  # the bundle's GPU instance
    actor = Where.options(scheduling_strategy=in_group(pg, 1)).remote()
    assert actorflow.get(actor.group.remote(), timeout=30) == pg.id
    with pytest.warns(DeprecationWarning):  # Ray's older options still work
        old_style = current_group_id.options(placement_group=pg, placement_group_bundle_index=0)
    assert actorflow.get(old_style.remote(), timeout=30) == pg.id
    # Requests that no bundle can hold fail where they are made (as in Ray).
    with pytest.raises(ValueError, match="cannot fit into"):
        node_of.options(num_cpus=3, scheduling_strategy=in_group(pg)).remote()
    with pytest.raises(ValueError, match="cannot fit into"):
        gpus.options(scheduling_strategy=in_group(pg, 1)).remote()
    with pytest.raises(ValueError, match="bundle index 2 is invalid"):
        node_of.options(scheduling_strategy=in_group(pg, 2)).remote()
    remove_placement_group(pg)
    with pytest.raises(exceptions.ActorDiedError, match="placement group"):
        actorflow.get(actor.node.remote(), timeout=30)
    with pytest.raises(exceptions.TaskUnschedulableError, match="removed"):
        actorflow.get(node_of.options(scheduling_strategy=in_group(pg)).remote(), timeout=30)
    poll_until(lambda: actorflow.available_resources().get("CPU") == 4.0, timeout=30)
    assert actorflow.available_resources()["GPU"] == 2.0


def test_a_group_waits_for_resources_to_free_up(make_cluster):
    make_cluster(num_cpus=2)
    holder = Where.options(num_cpus=2).remote()
    actorflow.get(holder.node.remote(), timeout=30)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    assert pg.wait(1) is False
    assert placement_group_table(pg)["state"] == "PENDING"
    with pytest.raises(exceptions.GetTimeoutError):
        actorflow.get(pg.ready(), timeout=0.5)
    ready = pg.ready()
    queued = node_of.options(scheduling_strategy=in_group(pg)).remote()  # waits for the group
    actorflow.kill(holder)
    assert actorflow.get(ready, timeout=30) == pg
    assert actorflow.get(queued, timeout=60) == actorflow.get_runtime_context().get_node_id()
    # An infeasible group stays pending (a node that could hold it may join).
    huge = placement_group([{"CPU": 8}])
    assert huge.wait(0.5) is False
    assert placement_group_table(huge)["stats"]["scheduling_state"] == "INFEASIBLE"


def test_capture_child_tasks(make_cluster):
    make_cluster(num_cpus=2)
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(30)

    @actorflow.remote(num_cpus=1)
    def parent() -> tuple:
        captured = actorflow.get(current_group_id.remote(), timeout=30)
        opted_out = current_group_id.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None)
        ).remote()
        return get_current_placement_group().id, captured, actorflow.get(opted_out, timeout=30)

    # A parent that captures: its children run in its group by default.
    got = actorflow.get(parent.options(scheduling_strategy=in_group(pg, capture=True)).remote())
    assert got == (pg.id, pg.id, None)
    # Without capture they run outside it (a 0-CPU child fits outside the full group).
    got = actorflow.get(parent.options(scheduling_strategy=in_group(pg)).remote(), timeout=60)
    assert got == (pg.id, None, None)
    # An actor that captures: tasks its methods start run in its group.
    actor = Where.options(scheduling_strategy=in_group(pg, capture=True)).remote()
    assert actorflow.get(actor.child_group.remote(), timeout=30) == pg.id
    plain = Where.options(scheduling_strategy=in_group(pg)).remote()
    assert actorflow.get(plain.child_group.remote(), timeout=30) is None
    assert actorflow.get_runtime_context().get_placement_group_id() is None


# -- several nodes -----------------------------------------------------------------------------


def run_driver(cluster, code: str) -> str:
    env = dict(os.environ, ACTORFLOW_SESSION_ROOT=cluster.session_root)
    script = f"import actorflow\nactorflow.init(address={cluster.address!r}, namespace='ns')\n"
    done = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"driver failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(240)
def test_strategies_over_nodes_and_lifetimes(local_cluster, poll_until):
    for _ in range(3):
        local_cluster.add_node(num_cpus=2)
    nodes = {n["node_id"] for n in local_cluster.nodes}
    actorflow.init(address=local_cluster.address, namespace="ns")

    spread = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert spread.wait(60)
    where = placement_group_table(spread)["bundles_to_node_id"]
    assert set(where.values()) == nodes
    for index in range(3):  # each bundle's work runs on the bundle's node
        strategy = in_group(spread, index)
        assert actorflow.get(node_of.options(scheduling_strategy=strategy).remote()) == where[index]
    actor = Where.options(scheduling_strategy=in_group(spread, 2)).remote()
    assert actorflow.get(actor.node.remote(), timeout=60) == where[2]

    # Every node has one CPU left: a STRICT_PACK group of two waits for the spread one to go.
    packed = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    assert packed.wait(1) is False
    remove_placement_group(spread)
    assert packed.wait(60)
    packed_nodes = set(placement_group_table(packed)["bundles_to_node_id"].values())
    assert len(packed_nodes) == 1
    soft = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    assert soft.wait(60)
    soft_nodes = set(placement_group_table(soft)["bundles_to_node_id"].values())
    assert len(soft_nodes) == 2 and not soft_nodes & packed_nodes
    tight = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="PACK")
    assert tight.wait(60)
    assert len(set(placement_group_table(tight)["bundles_to_node_id"].values())) == 1

    # STRICT_SPREAD over more bundles than nodes waits until a node joins.
    for group in (packed, soft, tight):
        remove_placement_group(group)
    wide = placement_group([{"CPU": 0.1}] * 4, strategy="STRICT_SPREAD")
    assert wide.wait(1) is False
    joined = local_cluster.add_node(num_cpus=1)
    assert wide.wait(60)
    assert joined["node_id"] in placement_group_table(wide)["bundles_to_node_id"].values()

    # A job's groups end with it, unless detached (names are per namespace).
    run_driver(
        local_cluster,
        """
        from actorflow.util.placement_group import placement_group
        kept = placement_group([{"CPU": 0.1}], name="kept", lifetime="detached")
        gone = placement_group([{"CPU": 0.1}], name="gone")
        assert kept.wait(60) and gone.wait(60)
        """,
    )
    kept = get_placement_group("kept")
    assert placement_group_table(kept)["state"] == "CREATED"

    def gone_removed() -> bool:
        rows = placement_group_table().values()
        return any(r["name"] == "gone" and r["state"] == "REMOVED" for r in rows)

    poll_until(gone_removed, timeout=30)
    remove_placement_group(kept)


def test_gcs_restart_keeps_the_group(local_cluster, poll_until):
    local_cluster.add_node(num_cpus=1)
    local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD", name="kept")
    assert pg.wait(60)
    before = placement_group_table(pg)
    actor = Where.options(scheduling_strategy=in_group(pg, 1)).remote()
    pid_node = actorflow.get(actor.node.remote(), timeout=60)

    local_cluster.kill_gcs()
    local_cluster.restart_gcs()
    after = placement_group_table(pg)
    assert after["state"] == "CREATED"
    assert after["bundles_to_node_id"] == before["bundles_to_node_id"]
    assert get_placement_group("kept") == pg
    assert actorflow.get(actor.node.remote(), timeout=60) == pid_node
    # The group still holds the cluster's CPUs: only work in it runs.
    strategy = in_group(pg, 0)
    node = actorflow.get(node_of.options(scheduling_strategy=strategy).remote(), timeout=60)
    assert node == before["bundles_to_node_id"][0]
    remove_placement_group(pg)  # asynchronous, as in Ray: the actor dies soon after

    def actor_dead() -> bool:
        try:
            actorflow.get(actor.node.remote(), timeout=30)
        except exceptions.ActorDiedError:
            return True
        return False

    poll_until(actor_dead, timeout=30)
    poll_until(lambda: actorflow.available_resources().get("CPU") == 2.0, timeout=30)


def test_bundles_of_a_dead_node_are_placed_again(local_cluster, poll_until):
    local_cluster.add_node(num_cpus=0)  # the head: no room for bundles
    first = local_cluster.add_node(num_cpus=1)
    local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert pg.wait(60)
    index = next(
        i
        for i, n in placement_group_table(pg)["bundles_to_node_id"].items()
        if n == first["node_id"]
    )
    actor = Where.options(scheduling_strategy=in_group(pg, index), max_restarts=1).remote()
    assert actorflow.get(actor.node.remote(), timeout=60) == first["node_id"]

    local_cluster.kill_node(first)
    poll_until(lambda: placement_group_table(pg)["state"] == "RESCHEDULING", timeout=30)
    joined = local_cluster.add_node(num_cpus=1)
    assert pg.wait(60)
    assert placement_group_table(pg)["bundles_to_node_id"][index] == joined["node_id"]
    # The actor restarts in its bundle, on the node that holds it now.
    assert actorflow.get(actor.node.remote(), timeout=60) == joined["node_id"]


def test_a_group_goes_with_the_actor_that_created_it(make_cluster, poll_until):
    make_cluster(num_cpus=2)

    @actorflow.remote
    class Owner:
        def make(self, detached: bool) -> PlacementGroup:
            return placement_group([{"CPU": 0.5}], lifetime="detached" if detached else None)

    owner = Owner.remote()
    owned = actorflow.get(owner.make.remote(False), timeout=30)
    kept = actorflow.get(owner.make.remote(True), timeout=30)
    assert owned.wait(30) and kept.wait(30)
    actorflow.kill(owner)
    poll_until(lambda: placement_group_table(owned)["state"] == "REMOVED", timeout=30)
    assert placement_group_table(kept)["state"] == "CREATED"
    remove_placement_group(kept)
