"""A mesh as one child of a supervisor: a nested supervisor whose children are the members.

    top = Supervisor.start([mesh_spec("workers", Worker, {"host": 2, "gpu": 4},
                                      strategy="one_for_one")], name="app")
    mesh = actorflow.get(actorflow.get_actor("app.workers").get_mesh.remote())

``one_for_one`` restarts the member that died, ``one_for_all`` the whole mesh; a restarted
member keeps its rank and goes back to its node (or its placement-group bundle). The relays
are told about the new member, so broadcasts through a mesh handle taken before the restart
reach it; member handles taken from such a mesh (``mesh[i]``, iteration) are the old ones:
ask ``get_mesh()`` again for the current ones.
"""

from __future__ import annotations

from typing import Any

from actorflow._private.scheduling_strategies import NodeAffinitySchedulingStrategy
from actorflow.actor import ActorClass
from actorflow.mesh._mesh import (
    MEMBER_OPTION,
    ActorMesh,
    _member_strategies,
    _node_of,
    member_info,
    start_relays,
)
from actorflow.mesh._shape import View, parse_shape, size_of
from actorflow.supervision._specs import ONE_FOR_ONE, PERMANENT, ChildSpec
from actorflow.supervision._supervisor import Supervisor, _Child, _plain_class

RANK_PREFIX = "rank"  # members are the children "rank0", "rank1", ...


class MeshSupervisor(Supervisor):
    """Supervises the members of one mesh (made by mesh_spec()); ``get_mesh()`` gives the
    current ActorMesh."""

    def __init__(
        self,
        mesh_class: Any,
        shape: Any,
        member_args: tuple = (),
        member_kwargs: dict[str, Any] | None = None,
        member_options: dict[str, Any] | None = None,
        **supervisor: Any,
    ) -> None:
        self._dims = parse_shape(shape)
        count = size_of(self._dims)
        self._class_name = _plain_class(mesh_class).__name__
        # The mesh is this supervisor's: its id is the supervisor's actor id.
        from actorflow._private.worker import context

        core = context.ensure_core()
        self._mesh_id = str(core.extensions.get("actor_id") or "")[:16]
        options = dict(member_options or {})
        base = mesh_class._options if isinstance(mesh_class, ActorClass) else {}
        strategies = _member_strategies(
            options.get("scheduling_strategy", base.get("scheduling_strategy")), count
        )
        self._pinned = strategies is not None  # bundles keep members on their nodes
        specs = []
        for rank in range(count):
            member = {**options, MEMBER_OPTION: member_info(self._mesh_id, self._dims, rank)}
            if strategies is not None:
                member["scheduling_strategy"] = strategies[rank]
            specs.append(
                ChildSpec(
                    f"{RANK_PREFIX}{rank}",
                    mesh_class,
                    args=tuple(member_args),
                    kwargs=dict(member_kwargs or {}),
                    options=member,
                )
            )
        self._handles: list[Any] = [None] * count
        self._nodes: list[str] = [""] * count
        self._relays: dict[str, tuple[Any, list[int]]] | None = None  # node -> (relay, ranks)
        super().__init__(specs, **supervisor)

    async def get_mesh(self, timeout: float = 30.0) -> ActorMesh:
        """The mesh of the current members, waiting (up to timeout s) for any restarting."""
        for rank in range(len(self._handles)):
            await self.get_child(f"{RANK_PREFIX}{rank}", timeout)
        assert self._relays is not None
        relays = tuple((relay, tuple(ranks)) for relay, ranks in self._relays.values())
        return ActorMesh(
            self._mesh_id,
            self._class_name,
            self._dims,
            View.full(self._dims),
            tuple(self._handles),
            relays,
            direct=False,  # the relays know the current members; old handles may be stale
        )

    async def _init(self, specs: list[ChildSpec]) -> None:
        await super()._init(specs)
        relays = await start_relays(
            self._mesh_id, dict(enumerate(self._handles)), dict(enumerate(self._nodes))
        )
        self._relays = {self._nodes[ranks[0]]: (relay, list(ranks)) for relay, ranks in relays}

    async def _start(self, child: _Child) -> None:
        await super()._start(child)
        name = child.spec.name
        if not name.startswith(RANK_PREFIX) or child.inc is None:
            return
        rank = int(name[len(RANK_PREFIX) :])
        handle = child.inc.handle
        node = str(await handle.__ray_call__.remote(_node_of))
        self._handles[rank] = handle
        old = self._nodes[rank]
        self._nodes[rank] = node
        if not old and not self._pinned:
            # Restarts go back to this node while it lives (the relay there delivers).
            child.actor_class = child.actor_class.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)
            )
        if self._relays is None:
            return  # the first start: the relays are made once every member runs
        if node == old:
            await self._relays[node][0].set_member.remote(rank, handle)
            return
        if old in self._relays:  # its node died: it restarted elsewhere
            relay, ranks = self._relays[old]
            ranks.remove(rank)
            try:
                await relay.drop_member.remote(rank)
            except Exception:
                pass  # that relay died with its node
        if node in self._relays:
            relay, ranks = self._relays[node]
            ranks.append(rank)
            await relay.set_member.remote(rank, handle)
        else:
            (relay, _), *_ = await start_relays(self._mesh_id, {rank: handle}, {rank: node})
            self._relays[node] = (relay, [rank])
        self._relays = {n: entry for n, entry in self._relays.items() if entry[1]}


def mesh_spec(
    name: str,
    cls: Any,
    shape: int | dict[str, int],
    *,
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    strategy: str = ONE_FOR_ONE,
    restart: str = PERMANENT,
    shutdown: float | None = None,
    supervisor_options: dict[str, Any] | None = None,
    **supervisor: Any,
) -> ChildSpec:
    """A ChildSpec for a mesh of ``shape`` actors of ``cls`` (each made with ``args``,
    ``kwargs`` and actor ``options``), supervised as one child. ``strategy``: ``one_for_one``
    restarts the member that died, ``one_for_all`` the whole mesh, ``rest_for_one`` that
    member and those of higher rank; ``supervisor``: intensity, period, backoff."""
    parse_shape(shape)  # a bad shape fails here, not in the supervisor
    return ChildSpec(
        name,
        MeshSupervisor,
        kwargs={
            "mesh_class": cls,
            "shape": shape,
            "member_args": tuple(args),
            "member_kwargs": dict(kwargs or {}),
            "member_options": dict(options or {}),
            "strategy": strategy,
            **supervisor,
        },
        options=dict(supervisor_options or {}),
        restart=restart,
        shutdown=shutdown,
    )
