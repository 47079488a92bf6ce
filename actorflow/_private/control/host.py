"""Hosting the cluster's control store on a runtime: the GCS and its actor table."""

from __future__ import annotations

from actorflow._private.config import Config
from actorflow._private.control.actors import ActorManager
from actorflow._private.control.gcs import GCS
from actorflow._private.control.storage import Storage
from actorflow._private.runtime import Runtime


def host_gcs(runtime: Runtime, config: Config, storage: Storage | None = None) -> GCS:
    """Make this runtime the cluster's head: the GCS and its actor table (reloaded from the
    storage, if it has tables; then call ``gcs.recover_all()``)."""
    gcs = GCS(runtime, node_timeout=config.node_timeout_seconds, storage=storage)
    actors = ActorManager(runtime, gcs, config)
    actors.load(gcs.load())
    runtime.register_actor("gcs", gcs)
    runtime.register_actor("actors", actors)
    gcs.start()
    return gcs
