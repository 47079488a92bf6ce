"""``actorflow.cloudpickle`` (Ray's ``ray.cloudpickle``): the cloudpickle actorflow uses. A ref
pickled with it out of band keeps its object alive while this process lives, as in Ray."""

from cloudpickle import *  # noqa: F403
from cloudpickle import dumps, loads

__all__ = ["dumps", "loads"]
