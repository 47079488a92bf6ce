"""Libraries built on actors: ``ActorPool`` and ``queue.Queue`` (Ray's ``ray.util`` ones)."""

from actorflow.util.actor_pool import ActorPool

__all__ = ["ActorPool"]
