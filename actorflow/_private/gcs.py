"""The GCS (global control store): the cluster's tables, off the per-call path.

Nodes, jobs and a key-value store live here; the actor table and the named-actor registry are
added by the actor manager (gcs_actors.py). Tables are plain dicts; handlers are thin.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from actorflow._private.runtime import Call, Runtime

logger = logging.getLogger("actorflow.gcs")


class GCS:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.nodes: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.kv: dict[str, dict[bytes, bytes]] = {}
        self._next_job = 0

    # -- nodes ----------------------------------------------------------------------------------

    def handle_register_node(self, payload: list, call: Call) -> None:
        node_id, address, resources = payload
        self.nodes[node_id] = {"node_id": node_id, "address": address, "resources": resources,
                               "alive": True, "registered_at": time.time()}
        if call.conn is not None:
            call.on_caller_lost(lambda: self._node_lost(node_id))

    def _node_lost(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            node["alive"] = False
            logger.warning("node %s at %s is gone", node_id, node["address"])

    def handle_get_nodes(self, payload: Any, call: Call) -> list:
        return list(self.nodes.values())

    # -- jobs -----------------------------------------------------------------------------------

    def handle_register_job(self, payload: list, call: Call) -> str:
        driver_address, namespace = payload
        self._next_job += 1
        job_id = f"{self._next_job:08x}"
        self.jobs[job_id] = {"job_id": job_id, "driver_address": driver_address,
                             "namespace": namespace, "alive": True, "started_at": time.time()}
        if call.conn is not None:
            call.on_caller_lost(lambda: self._job_ended(job_id))
        return job_id

    def _job_ended(self, job_id: str) -> None:
        if job_id in self.jobs:
            self.jobs[job_id]["alive"] = False

    def handle_job_info(self, payload: list, call: Call) -> dict | None:
        return self.jobs.get(payload[0])

    def handle_list_jobs(self, payload: Any, call: Call) -> list:
        return list(self.jobs.values())

    # -- key-value ------------------------------------------------------------------------------

    def handle_kv_put(self, payload: list, call: Call) -> bool:
        namespace, key, value, overwrite = payload
        table = self.kv.setdefault(namespace, {})
        if key in table and not overwrite:
            return False
        table[key] = value
        return True

    def handle_kv_get(self, payload: list, call: Call) -> bytes | None:
        namespace, key = payload
        return self.kv.get(namespace, {}).get(key)

    def handle_kv_del(self, payload: list, call: Call) -> bool:
        namespace, key = payload
        return self.kv.get(namespace, {}).pop(key, None) is not None

    def handle_kv_keys(self, payload: list, call: Call) -> list:
        namespace, prefix = payload
        return [k for k in self.kv.get(namespace, {}) if k.startswith(prefix)]
