"""Libraries built on actors: ``ActorPool`` and ``queue.Queue`` (Ray's ``ray.util`` ones), and
``state``: what a running cluster holds (``actorflow memory``)."""

from actorflow.util import state
from actorflow.util.actor_pool import ActorPool

__all__ = ["ActorPool", "state"]
