"""Messages to the GCS's actor manager (actor "actors"), and the replies callers unpack.

``list_actors`` carries no payload (answered with the actor table as dicts).
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message


@message("actors", "create_actor")
class CreateActor(NamedTuple):
    """Register an actor and start creating it (answered with an ActorCreated)."""

    spec: dict  # actor_id, class_name, meta, resources, name, namespace, lifetime, owner, ...


class ActorCreated(NamedTuple):
    actor_id: str
    existed: bool  # a live actor of that name, got with get_if_exists
    meta: dict


@message("actors", "actor_worker_exited")
class ActorWorkerExited(NamedTuple):
    """From a raylet: an actor's worker process exited."""

    worker_id: str
    exit_code: int | None


@message("actors", "actor_exited")
class ActorExited(NamedTuple):
    """From the actor itself: it ends on purpose (exit_actor(), a graceful terminate)."""

    actor_id: str
    reason: str


# Ray's wording (programs and tests written for Ray look for it), then ours.
KILLED_REASON = "The actor is dead because it was killed by `ray.kill` (actorflow.kill())"


@message("actors", "kill_actor")
class KillActor(NamedTuple):
    actor_id: str
    no_restart: bool  # false: end its process, and it restarts if it has restarts left
    reason: str = KILLED_REASON


@message("actors", "wait_actor")
class WaitActor(NamedTuple):
    """Long poll: answered with an ActorState once the actor's is newer than known_version
    (and, if settled, ALIVE or DEAD)."""

    actor_id: str
    known_version: int
    settled: bool = True


class ActorState(NamedTuple):
    version: int
    state: str  # PENDING, ALIVE, RESTARTING or DEAD
    address: str  # where to call it, when ALIVE
    cause: str  # why it is DEAD
    error_wire: list | None  # the error callers get, when it has one (its constructor's)


@message("actors", "watch_actor")
class WatchActor(NamedTuple):
    """Long poll: answered with the actor's state changes (event dicts) after known_version,
    once there are any; known_version -1: its state now."""

    actor_id: str
    known_version: int


@message("actors", "get_named_actor")
class GetNamedActor(NamedTuple):
    """Answered with a NamedActor."""

    name: str
    namespace: str | None


class NamedActor(NamedTuple):
    actor_id: str
    meta: dict


@message("actors", "list_named_actors")
class ListNamedActors(NamedTuple):
    """Answered with [{"name", "namespace"}, ...]."""

    all_namespaces: bool
    namespace: str
