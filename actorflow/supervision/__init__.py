"""Supervision trees, as in Erlang/OTP: supervisors start children, watch them
(actorflow.watch) and restart them.

    from actorflow.supervision import ChildSpec, Supervisor, supervisor_spec

    top = Supervisor.start([
        ChildSpec("db", Database, args=(path,)),
        supervisor_spec("workers", [ChildSpec("w1", Worker), ChildSpec("w2", Worker)],
                        strategy="one_for_all", intensity=5, period=10),
    ], name="app", strategy="one_for_one")
    worker = actorflow.get(top.get_child.remote("db"))    # or actorflow.get_actor("app.db")

- Children start in order, each once the one before is ALIVE; the supervisor is ALIVE once
  all are. They are created with max_restarts=0: the supervisor does the restarting. They die
  with the supervisor actor, not its process: a supervisor with max_restarts of its own that
  is restarted adopts the children still alive (their ids are kept in the GCS).
- Restart types: permanent (always restarted), transient (restarted unless it ended
  normally: exit_actor() or a graceful terminate), temporary (never restarted).
- Strategies: one_for_one, one_for_all, rest_for_one. A group restart stops the running
  siblings in reverse start order and starts the group in order.
- More than ``intensity`` restarts within ``period`` seconds (default 3 in 5 s, Elixir's
  default: OTP's 1 in 5 s is strict for actors whose start is a process) make the supervisor
  give up: it stops its children and dies with the cause "supervisor NAME gave up: restart
  intensity exceeded ...", which its own supervisor handles like any child failure.
- Restarts wait an exponential backoff with jitter (Backoff), reset once a child has run for
  ``reset_after`` seconds.
- A restarted child is a new actor (a new id): old handles raise ActorDiedError. Get the
  current handle from ``supervisor.get_child.remote(name)`` (waits while it restarts), from
  which_children(), or, when the supervisor has a name, with
  ``actorflow.get_actor("<supervisor name>.<child name>")``: children of a named supervisor
  are named so (nested supervisors too: "app.workers.w1").
- A mesh (actorflow.mesh) is one child with ``mesh_spec(name, cls, shape, strategy=...)``: a
  nested MeshSupervisor whose children are the members (one_for_one restarts a member,
  one_for_all the whole mesh); ``get_mesh()`` on it gives the current ActorMesh.
- Custom decisions: subclass Supervisor and override ``decide(child, event) -> Directive``
  (RESTART, RESUME, STOP, ESCALATE); exit_kind(event) classifies the cause.
"""

from actorflow.exceptions import ChildStartError
from actorflow.supervision._mesh import MeshSupervisor, mesh_spec
from actorflow.supervision._specs import (
    CRASHED,
    GAVE_UP,
    KILLED,
    NODE_DIED,
    NORMAL,
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    OTHER,
    OWNER_DIED,
    PERMANENT,
    REST_FOR_ONE,
    START_FAILED,
    TEMPORARY,
    TRANSIENT,
    Backoff,
    ChildInfo,
    ChildSpec,
    Directive,
    SupervisionEvent,
    exit_kind,
)
from actorflow.supervision._supervisor import Supervisor, supervisor_spec

__all__ = [
    "CRASHED",
    "GAVE_UP",
    "KILLED",
    "NODE_DIED",
    "NORMAL",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "OTHER",
    "OWNER_DIED",
    "PERMANENT",
    "REST_FOR_ONE",
    "START_FAILED",
    "TEMPORARY",
    "TRANSIENT",
    "Backoff",
    "ChildInfo",
    "ChildSpec",
    "ChildStartError",
    "Directive",
    "MeshSupervisor",
    "SupervisionEvent",
    "Supervisor",
    "exit_kind",
    "mesh_spec",
    "supervisor_spec",
]
