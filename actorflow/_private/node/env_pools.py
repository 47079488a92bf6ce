"""Which pool of workers a lease is for: its job and its runtime_env.

A worker belongs to one pool, ``(job id, env key)`` (env key "" for no runtime_env): it imports
its job's modules, and it was started in its env (environment variables, working directory,
import path, Python), so it never runs work of another pool. The first worker of a pool with an
env waits for the env's setup on this node (runtime_env/agent.py); a setup that fails fails the
pool's queued lease requests with its RuntimeEnvSetupError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actorflow._private.protocol.worker_spec import WorkerSpec
from actorflow._private.runtime_env import spec as env_spec
from actorflow._private.runtime_env.agent import EnvAgent

Pool = tuple[str, str]  # (job id, env key)


class EnvPools:
    def __init__(
        self, agent: EnvAgent, on_setup_done: Callable[[Pool, BaseException | None], None]
    ):
        self.agent = agent
        self._on_setup_done = on_setup_done
        self._envs: dict[str, dict[str, Any]] = {}  # env key -> its wire form
        self._setting_up: set[Pool] = set()

    def pool_of(self, job_id: str, wire: dict[str, Any] | None) -> Pool:
        key = env_spec.env_key(wire)
        if key and key not in self._envs:
            self._envs[key] = dict(wire or {})
        return (job_id, key)

    def ready(self, pool: Pool) -> bool:
        """Whether workers of pool can start now; if not, its env's setup is under way and
        on_setup_done(pool, error or None) follows."""
        key = pool[1]
        if not key or self.agent.ready(key) is not None:
            return True
        if pool not in self._setting_up:
            self._setting_up.add(pool)
            task = self.agent.prepare(key, self._envs[key])
            task.add_done_callback(lambda t: self._done(pool, t))
        return False

    def _done(self, pool: Pool, task: asyncio.Task) -> None:
        self._setting_up.discard(pool)
        error = (
            task.exception() if not task.cancelled() else asyncio.CancelledError("node shutdown")
        )
        self._on_setup_done(pool, error)

    def spec_for(self, pool: Pool, job_spec: WorkerSpec) -> WorkerSpec:
        """The spec of a worker of pool (its env must be ready)."""
        if not pool[1]:
            return job_spec
        prepared = self.agent.ready(pool[1])
        assert prepared is not None, "a worker of an env that is not set up"
        return job_spec.replace(
            runtime_env=prepared.wire,
            env_vars=prepared.env_vars,
            working_dir=prepared.working_dir,
            env_sys_path=prepared.sys_path,
            python=prepared.python,
        )

    def eager(self, pool: Pool) -> bool:
        """Whether the pool's env is set up before any work asks (Ray's eager_install)."""
        return not pool[1] or env_spec.eager_install(self._envs.get(pool[1]))
