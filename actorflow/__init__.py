"""actorflow: Ray Core's programming model (tasks, actors, objects), asyncio all the way down."""

from actorflow import actor, dag, exceptions, runtime_env
from actorflow.api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_actor_async,
    get_gpu_ids,
    init,
    is_initialized,
    kill,
    list_named_actors,
    method,
    nodes,
    put,
    remote,
    shutdown,
    timeline,
    wait,
)
from actorflow.mesh import ActorMesh
from actorflow.object_ref import DynamicObjectRefGenerator, ObjectRef, ObjectRefGenerator
from actorflow.runtime_context import RuntimeContext, get_runtime_context
from actorflow.scope import Scope, scope
from actorflow.watching import ActorEvent, ActorWatch, watch

__version__ = "0.1.0"

__all__ = [
    "ActorEvent",
    "ActorMesh",
    "ActorWatch",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "RuntimeContext",
    "Scope",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "dag",
    "exceptions",
    "get",
    "get_actor",
    "get_actor_async",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "list_named_actors",
    "mesh",
    "method",
    "nodes",
    "put",
    "remote",
    "runtime_env",
    "scope",
    "shutdown",
    "timeline",
    "wait",
    "watch",
]


def __getattr__(name: str) -> object:
    # ``actorflow.util`` after a plain ``import actorflow`` (as ``ray.util`` works), imported
    # on first use so that start-up does not pay for the libraries.
    if name == "util":
        import actorflow.util

        return actorflow.util
    raise AttributeError(f"module 'actorflow' has no attribute {name!r}")
