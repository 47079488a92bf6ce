"""Hosting the cluster's control store on a runtime: the GCS, its actor and placement-group
tables, and its task events."""

from __future__ import annotations

from actorflow._private.config import Config
from actorflow._private.control.actors import ActorManager
from actorflow._private.control.gcs import GCS
from actorflow._private.control.placement_groups import PlacementGroupManager
from actorflow._private.control.storage import CountingStorage, MemoryStorage, Storage
from actorflow._private.control.task_events import TaskEvents
from actorflow._private.runtime import Runtime


def host_gcs(runtime: Runtime, config: Config, storage: Storage | None = None) -> GCS:
    """Make this runtime the cluster's head: the GCS, its actor and placement-group tables
    (reloaded from the storage, if it has tables; then call ``gcs.recover_all()``)."""
    if not isinstance(storage, CountingStorage):  # counted for /metrics
        storage = CountingStorage(storage or MemoryStorage())
    gcs = GCS(runtime, node_timeout=config.node_timeout_seconds, storage=storage)
    actors = ActorManager(runtime, gcs, config)
    groups = PlacementGroupManager(runtime, gcs, actors, config)
    tables = gcs.load()
    actors.load(tables)
    groups.load(tables)
    runtime.register_actor("gcs", gcs)
    runtime.register_actor("actors", actors)
    runtime.register_actor("placement_groups", groups)
    runtime.register_actor("task_events", TaskEvents(config))
    gcs.start()
    return gcs
