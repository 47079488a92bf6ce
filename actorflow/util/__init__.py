"""Libraries built on actors: ``ActorPool`` (client-side, as Ray's), ``PoolActor`` (a pool
that is itself an actor, shared by name) and ``queue.Queue`` (Ray's ``ray.util`` ones),
placement groups (``placement_group`` and friends, as ``ray.util`` has them), and ``state``:
what a running cluster holds (``actorflow memory``)."""

from actorflow._private.worker import context
from actorflow.util import state
from actorflow.util.actor_pool import ActorPool
from actorflow.util.placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from actorflow.util.pool_actor import PoolActor, PoolFullError
from actorflow.util.progress import progress

__all__ = [
    "ActorPool",
    "get_current_placement_group",
    "get_node_ip_address",
    "get_placement_group",
    "placement_group",
    "PoolActor",
    "PoolFullError",
    "placement_group_table",
    "progress",
    "remove_placement_group",
    "state",
]


def get_node_ip_address() -> str:
    """The IP address this process's cluster connections use (Ray's
    ``ray.util.get_node_ip_address``)."""
    address = context.ensure_core().address  # tcp://HOST:PORT
    return address.split("://", 1)[-1].rsplit(":", 1)[0]
