"""The scheduling policy and GPU instances as plain state: no processes, no sockets."""

from __future__ import annotations

import pytest

from actorflow import exceptions
from actorflow._private.node.resources import NodeResources
from actorflow._private.node.scheduling import NodeView, Scheduler
from actorflow._private.scheduling_strategies import strategy_to_wire
from actorflow.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def view(node_id: str, total: dict, available: dict | None = None, alive: bool = True) -> NodeView:
    return NodeView(
        node_id,
        f"tcp://127.0.0.1:{node_id}",
        dict(total),
        dict(total if available is None else available),
        alive,
    )


def test_default_prefers_the_local_node_while_it_fits():
    nodes = [view("a", {"CPU": 2}), view("b", {"CPU": 8})]
    assert Scheduler().pick(nodes, {"CPU": 1}, None, "a").node_id == "a"


def test_default_spills_to_the_node_with_most_room_when_local_is_full():
    nodes = [
        view("a", {"CPU": 2}, {"CPU": 0}),
        view("b", {"CPU": 4}, {"CPU": 1}),
        view("c", {"CPU": 4}, {"CPU": 3}),
    ]
    assert Scheduler().pick(nodes, {"CPU": 1}, None, "a").node_id == "c"


def test_default_queues_locally_when_nothing_fits_now():
    nodes = [view("a", {"CPU": 2}, {"CPU": 0}), view("b", {"CPU": 2}, {"CPU": 0})]
    assert Scheduler().pick(nodes, {"CPU": 1}, None, "a").node_id == "a"


def test_default_goes_where_it_could_fit_when_local_never_can():
    nodes = [view("a", {"CPU": 2}), view("b", {"CPU": 2, "gpu_box": 1}, {"CPU": 0})]
    assert Scheduler().pick(nodes, {"gpu_box": 1}, None, "a").node_id == "b"


def test_infeasible_everywhere_names_the_request_and_the_largest_node():
    nodes = [view("a", {"CPU": 2}), view("b", {"CPU": 4})]
    with pytest.raises(exceptions.TaskUnschedulableError, match=r"CPU: 8.*CPU: 4"):
        Scheduler().pick(nodes, {"CPU": 8}, None, "a")


def test_dead_nodes_are_never_picked():
    nodes = [view("a", {"CPU": 1}, {"CPU": 0}), view("b", {"CPU": 4}, alive=False)]
    assert Scheduler().pick(nodes, {"CPU": 1}, None, "a").node_id == "a"
    with pytest.raises(exceptions.TaskUnschedulableError):
        Scheduler().pick(nodes, {"CPU": 2}, None, "a")


def test_spread_takes_every_node_in_turn():
    nodes = [view(n, {"CPU": 4}) for n in "abc"]
    scheduler = Scheduler()
    picks = [scheduler.pick(nodes, {"CPU": 1}, "SPREAD", "a").node_id for _ in range(6)]
    assert set(picks[:3]) == set(picks[3:]) == {"a", "b", "c"}


def test_spread_prefers_nodes_that_fit_now():
    nodes = [view("a", {"CPU": 1}, {"CPU": 0}), view("b", {"CPU": 1})]
    scheduler = Scheduler()
    assert {scheduler.pick(nodes, {"CPU": 1}, "SPREAD", "a").node_id for _ in range(4)} == {"b"}


def test_node_affinity_hard_and_soft():
    nodes = [view("a", {"CPU": 1}), view("b", {"CPU": 1}, {"CPU": 0})]
    scheduler = Scheduler()
    assert scheduler.pick(nodes, {"CPU": 1}, ["node", "b", False], "a").node_id == "b"
    with pytest.raises(exceptions.TaskUnschedulableError, match="zz"):
        scheduler.pick(nodes, {"CPU": 1}, ["node", "zz", False], "a")
    with pytest.raises(exceptions.TaskUnschedulableError, match="has only"):
        scheduler.pick(nodes, {"CPU": 2}, ["node", "b", False], "a")
    assert scheduler.pick(nodes, {"CPU": 1}, ["node", "zz", True], "a").node_id == "a"


def test_take_counts_a_spilled_request_until_the_next_report():
    node = view("b", {"CPU": 2})
    node.take({"CPU": 2})
    assert not node.fits({"CPU": 1}) and node.feasible({"CPU": 1})


def test_strategy_wire_forms():
    assert strategy_to_wire(None) is None and strategy_to_wire("DEFAULT") is None
    assert strategy_to_wire("SPREAD") == "SPREAD"
    assert strategy_to_wire(NodeAffinitySchedulingStrategy("abc", soft=True)) == [
        "node",
        "abc",
        True,
    ]
    with pytest.raises(ValueError):
        strategy_to_wire("PACK")
    with pytest.raises(ValueError, match="node_id"):
        NodeAffinitySchedulingStrategy("")


def test_gpu_instances_whole_and_fractional():
    node = NodeResources({"CPU": 4, "GPU": 2})
    first = node.take_gpus(1)
    second = node.take_gpus(1)
    assert sorted(first + second) == [0, 1]
    assert node.gpus_for(1) is None and node.gpus_for(0.5) is None
    node.give_gpus(first, 1)
    halves = [node.take_gpus(0.5), node.take_gpus(0.5)]
    assert halves == [first, first]  # two halves share one GPU
    assert node.gpus_for(0.5) is None


def test_fits_accounts_for_fragmented_gpus():
    node = NodeResources({"GPU": 2})
    node.acquire({"GPU": 0.5})
    node.take_gpus(0.5)
    node.acquire({"GPU": 0.5})
    node.gpu_free[1] -= 0.5  # a half on each GPU: 1.0 free in total, but no whole GPU
    assert node.available["GPU"] == pytest.approx(1.0)
    assert not node.fits({"GPU": 1})
    assert node.fits({"GPU": 0.5})


def test_snapshot_is_independent():
    node = NodeResources({"CPU": 2, "GPU": 1})
    copy = node.snapshot()
    copy.acquire({"CPU": 2})
    copy.take_gpus(1)
    assert node.available["CPU"] == 2 and node.gpu_free == [1.0]
