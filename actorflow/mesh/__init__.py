"""Actor meshes: N actors of one class created together, called, sliced and supervised as one.

    mesh = Worker.options(num_cpus=0).mesh({"host": 2, "gpu": 4}, *init_args)
    values = await mesh.step.broadcast(batch)       # [rank 0's value, rank 1's, ...]
    async for rank, value in mesh.step.broadcast(batch): ...   # as they arrive, a node at a time
    for rank, value in mesh.step.stream(batch): ...            # each member as it answers
    total = await mesh.loss.sum()                   # folded on each node's relay, then here
    sub = mesh.slice(host=1)                        # a sub-mesh of shape {"gpu": 4}
    handle = mesh[1, 2]                             # every dimension indexed: an ActorHandle

Inside a member, ``actorflow.get_runtime_context()`` has ``mesh_rank``, ``mesh_shape`` and
``mesh_coords``. A broadcast costs the caller one message per node: one relay actor per node
(pinned there, ``num_cpus=0``) calls that node's members. ``actorflow.supervision.mesh_spec``
makes a mesh one child of a Supervisor.
"""

from actorflow.actor import set_mesh_factory
from actorflow.mesh._mesh import ActorMesh, MeshMethod, create, create_async
from actorflow.mesh._result import MeshMemberDiedError, MeshReduction, MeshResult
from actorflow.mesh._stream import MeshStream

set_mesh_factory(create, create_async)

__all__ = [
    "ActorMesh",
    "MeshMemberDiedError",
    "MeshMethod",
    "MeshReduction",
    "MeshResult",
    "MeshStream",
]
