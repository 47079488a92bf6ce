"""ActorMesh: N actors of one class created together and called as one.

    mesh = Worker.options(num_cpus=0).mesh({"host": 2, "gpu": 4})
    values = await mesh.step.broadcast(batch)        # one call per member, results in mesh order
    total = await mesh.loss.sum()                    # reduced on each node, then here
    mesh.slice(host=1)                               # a sub-mesh {"gpu": 4}; mesh[1, 2]: a handle

Creation places each member by the class's options (a placement group strategy without a
bundle index puts rank i in bundle i), asks every member where it runs, and starts one relay
actor per node that has members (pinned there, num_cpus=0). A broadcast sends one call per
node; large arguments are put in the object store once and travel by reference.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable, Iterator
from typing import Any

import actorflow
from actorflow import exceptions
from actorflow._private import ids, serialization
from actorflow._private.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)
from actorflow._private.worker import context
from actorflow.actor import ActorClass, ActorHandle
from actorflow.mesh._relay import MeshRelay
from actorflow.mesh._result import MeshReduction, MeshResult, _Call
from actorflow.mesh._shape import View, parse_shape, size_of
from actorflow.mesh._stream import MeshStream
from actorflow.object_ref import ObjectRef

MEMBER_OPTION = "_mesh_member"  # the actor option that tells a member its place in the mesh
START_TIMEOUT = 120.0  # seconds the members and relays may take to start

RelayActor: ActorClass[MeshRelay] = actorflow.remote(MeshRelay)


class ActorMesh:
    """A handle to a mesh of actors (or to part of one): serialisable, so it can be passed to
    tasks and actors. ``mesh.method.broadcast(...)`` calls every member; ``mesh[i]``,
    ``mesh[1:3]``, ``mesh.slice(dim=i)`` slice it (indexing every dimension gives the member's
    ``ActorHandle``); ``len(mesh)``, ``iter(mesh)`` (members as ActorHandles), ``mesh.shape``."""

    def __init__(
        self,
        mesh_id: str,
        class_name: str,
        dims: tuple[tuple[str, int], ...],
        view: View,
        members: tuple[ActorHandle, ...],
        relays: tuple[tuple[ActorHandle, tuple[int, ...]], ...],
        direct: bool = True,
    ) -> None:
        self._mesh_id = mesh_id
        self._class_name = class_name
        self._dims = tuple((str(n), int(s)) for n, s in dims)  # of the whole mesh
        self._view = view  # the part this handle covers
        self._members = members  # every member of the whole mesh, by global rank
        self._relays = relays  # (relay, the global ranks it delivers to), one per node
        # A node with one member in a call gets that call straight (one message either way,
        # one hop less); not in supervised meshes, whose relays know the restarted members.
        self._direct = direct

    def __reduce__(self) -> Any:
        return (
            ActorMesh,
            (
                self._mesh_id,
                self._class_name,
                self._dims,
                self._view,
                self._members,
                self._relays,
                self._direct,
            ),
        )

    # -- shape and slicing ----------------------------------------------------------------------

    @property
    def mesh_id(self) -> str:
        return self._mesh_id

    @property
    def shape(self) -> dict[str, int]:
        """This (sub)mesh's dimensions: {name: size}."""
        return self._view.shape

    @property
    def ranks(self) -> list[int]:
        """The members' ranks in the whole mesh, in this mesh's order."""
        return list(self._view.ranks)

    def __len__(self) -> int:
        return len(self._view)

    def __iter__(self) -> Iterator[ActorHandle]:
        return iter([self._members[r] for r in self._view.ranks])

    def __getitem__(self, key: Any) -> ActorMesh | ActorHandle:
        return self._part(self._view.index(key))

    def slice(self, **picks: int | slice) -> ActorMesh | ActorHandle:
        """Index (an int, the dimension goes) or slice (the dimension stays) dimensions by
        name; every dimension indexed: that member's ActorHandle."""
        return self._part(self._view.select(picks))

    def _part(self, picked: View | int) -> ActorMesh | ActorHandle:
        if isinstance(picked, int):
            return self._members[picked]
        return ActorMesh(
            self._mesh_id,
            self._class_name,
            self._dims,
            picked,
            self._members,
            self._relays,
            self._direct,
        )

    def __repr__(self) -> str:
        return f"ActorMesh({self._class_name}, {self.shape}, id={self._mesh_id})"

    # -- calls ----------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> MeshMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        found = self._members[0]._methods().get(name)
        if found is None:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return MeshMethod(self, name, found[0], found[1])

    def relay_stats(self) -> list[dict[str, Any]]:
        """Each node's relay: the broadcasts it received (``runs``), the member calls it made
        (``delivered``) and the ranks it delivers to."""
        return actorflow.get([relay.stats.remote() for relay, _ in self._relays])

    def kill(self) -> None:
        """Kill every member and relay of the whole mesh (not restarted)."""
        for handle in [*self._members, *(relay for relay, _ in self._relays)]:
            try:
                actorflow.kill(handle)
            except exceptions.ActorflowError:
                pass  # already gone


class MeshMethod:
    """A method of every member of a mesh."""

    def __init__(self, mesh: ActorMesh, name: str, signature: Any, options: dict[str, Any]) -> None:
        self._mesh = mesh
        self._name = name
        self._signature = signature
        self._label = f"{mesh._class_name}.{name}"
        if options.get("num_returns", 1) not in (1, None):
            raise TypeError(
                f"{self._label} returns {options['num_returns']!r} values: a mesh broadcasts "
                f"methods that return one value"
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"mesh methods cannot be called directly: use {self._name}.broadcast(...), "
            f".stream(...), .reduce(fn, ...) or .sum(...)"
        )

    def broadcast(self, *args: Any, **kwargs: Any) -> MeshResult:
        """Call the method on every member; a MeshResult (await it, get() it, iterate it)."""
        return MeshResult(self._send(args, kwargs, None))

    def stream(self, *args: Any, **kwargs: Any) -> MeshStream:
        """Call the method on every member; a MeshStream that yields ``(rank, value)`` for
        each member as soon as it answers (a broadcast answers a node at a time)."""
        return MeshStream(self._send(args, kwargs, None, stream=True))

    def reduce(self, fn: Callable[[Any, Any], Any], *args: Any, **kwargs: Any) -> MeshReduction:
        """Call the method on every member and fold the values with fn near the data: each
        node's relay folds its members' values (in rank order), then the caller folds the
        nodes' partials. fn must be associative and commutative, and picklable."""
        if not callable(fn):
            raise TypeError(f"reduce() takes a function of two values first, got {fn!r}")
        return MeshReduction(self._send(args, kwargs, fn), fn)

    def sum(self, *args: Any, **kwargs: Any) -> MeshReduction:
        """reduce(operator.add, ...)."""
        return self.reduce(operator.add, *args, **kwargs)

    def _send(self, args: tuple, kwargs: dict, reducer: Any, stream: bool = False) -> _Call:
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self._label}(): {exc}") from None
        mesh = self._mesh
        payload = _share_large(args, kwargs)
        wanted = set(mesh._view.ranks)
        parts: list[tuple[Any, tuple[int, ...], bool]] = []
        for relay, relay_ranks in mesh._relays:
            mine = tuple(r for r in relay_ranks if r in wanted)
            if not mine:
                continue
            if len(mine) == 1 and mesh._direct:
                member = getattr(mesh._members[mine[0]], self._name)
                parts.append((member.remote(*payload[0], **payload[1]), mine, True))
                continue
            if stream:
                streaming = relay.run_stream.options(num_returns="streaming")
                source = streaming.remote(self._name, list(mine), payload)
            else:
                source = relay.run.remote(self._name, list(mine), payload, reducer)
            parts.append((source, mine, False))
        return _Call(self._label, mesh._dims, mesh._view.ranks, parts)


def _share_large(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Arguments larger than an inline value go to the object store once: each relay, then
    each member, gets the ref (a member resolves it from its node's store)."""
    limit = context.ensure_core().config.inline_object_max_bytes

    def shared(value: Any) -> Any:
        return actorflow.put(value) if _size(value) > limit else value

    return tuple(shared(v) for v in args), {k: shared(v) for k, v in kwargs.items()}


def _size(value: Any) -> int:
    if isinstance(value, ObjectRef) or value is None or isinstance(value, (bool, int, float)):
        return 0
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    return serialization.size_of(serialization.serialize_views(value))


# -- creation -----------------------------------------------------------------------------------


def _node_of(_instance: Any) -> str:
    """Run in a member (``__ray_call__``): the node it lives on."""
    return actorflow.get_runtime_context().get_node_id()


def _member_strategies(strategy: Any, count: int) -> list[Any] | None:
    """One scheduling strategy per rank when a placement group is given without a bundle
    index (rank i goes to bundle i); None: every member takes the class's options as they are."""
    if not isinstance(strategy, PlacementGroupSchedulingStrategy):
        return None
    group = strategy.placement_group
    if group is None or strategy.placement_group_bundle_index != -1:
        return None
    bundles = group.bundle_count
    if bundles < count:
        raise ValueError(
            f"the placement group has {bundles} bundle(s) but the mesh has {count} members: "
            f"a mesh puts one member in each bundle"
        )
    return [
        PlacementGroupSchedulingStrategy(group, i, strategy.placement_group_capture_child_tasks)
        for i in range(count)
    ]


def member_info(mesh_id: str, dims: tuple[tuple[str, int], ...], rank: int) -> dict[str, Any]:
    """What a member is told about its place (get_runtime_context().mesh_rank, ...)."""
    return {"id": mesh_id, "rank": rank, "shape": [[name, size] for name, size in dims]}


async def start_relays(
    mesh_id: str,
    members: dict[int, ActorHandle],
    nodes: dict[int, str],
    lifetime: Any = None,
) -> tuple[tuple[ActorHandle, tuple[int, ...]], ...]:
    """One relay per node that has members (rank -> handle, rank -> node), pinned there;
    returns once they are ready."""
    by_node: dict[str, list[int]] = {}
    for rank in sorted(members):
        by_node.setdefault(nodes[rank], []).append(rank)
    relays = []
    for node, ranks in by_node.items():
        relay = RelayActor.options(
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            lifetime=lifetime,
        ).remote(mesh_id, {rank: members[rank] for rank in ranks})
        relays.append((relay, tuple(ranks)))
    await asyncio.gather(*(relay.__ray_ready__.remote() for relay, _ in relays))
    return tuple(relays)


async def create_async(actor_class: ActorClass, shape: Any, args: tuple, kwargs: dict) -> ActorMesh:
    """Create the members and relays; the mesh once all are ready."""
    dims = parse_shape(shape)
    count = size_of(dims)
    options = actor_class._options
    if options.get("name"):
        raise ValueError(
            f"a mesh's members cannot share the name {options['name']!r}: leave name= out "
            f"(pass the mesh handle around instead, or name the actor that holds it)"
        )
    strategies = _member_strategies(options.get("scheduling_strategy"), count)
    mesh_id = ids.new_id(8).hex()
    members: list[ActorHandle] = []
    relays: tuple[tuple[ActorHandle, tuple[int, ...]], ...] = ()
    try:
        for rank in range(count):
            member_options: dict[str, Any] = {MEMBER_OPTION: member_info(mesh_id, dims, rank)}
            if strategies is not None:
                member_options["scheduling_strategy"] = strategies[rank]
            members.append(actor_class.options(**member_options).remote(*args, **kwargs))
        where = await asyncio.wait_for(
            asyncio.gather(
                *(m.__ray_call__.remote(_node_of) for m in members), return_exceptions=True
            ),
            START_TIMEOUT,
        )
        for rank, node in enumerate(where):
            if isinstance(node, BaseException):
                raise exceptions.ActorDiedError(
                    f"mesh member rank {rank} of {actor_class.__name__} did not start: {node}",
                    node,
                )
        nodes = [str(node) for node in where]
        relays = await asyncio.wait_for(
            start_relays(
                mesh_id, dict(enumerate(members)), dict(enumerate(nodes)), options.get("lifetime")
            ),
            START_TIMEOUT,
        )
    except BaseException as exc:
        for handle in [*members, *(relay for relay, _ in relays)]:
            try:
                actorflow.kill(handle)
            except exceptions.ActorflowError:
                pass
        if isinstance(exc, asyncio.TimeoutError):
            raise exceptions.GetTimeoutError(
                f"the mesh of {count} {actor_class.__name__} actors did not start within "
                f"{START_TIMEOUT:g} s (not enough resources for all of them?)"
            ) from None
        raise
    return ActorMesh(mesh_id, actor_class.__name__, dims, View.full(dims), tuple(members), relays)


def create(actor_class: ActorClass, shape: Any, args: tuple, kwargs: dict) -> ActorMesh:
    """create_async for sync code (waits for the mesh to start)."""
    core = context.ensure_core()
    loop = core.runtime.loop
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError(
            f"{actor_class.__name__}.mesh() waits for the members to start, which cannot "
            f"happen on actorflow's own event loop (async actor or task code): use "
            f"`await {actor_class.__name__}.mesh_async(shape)`"
        )
    future = asyncio.run_coroutine_threadsafe(create_async(actor_class, shape, args, kwargs), loop)
    return future.result()
