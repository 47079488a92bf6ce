"""``ActorflowBackend``: joblib's process-pool backend protocol on actorflow's ``Pool``.

joblib hands the backend batches of calls (callables it pickles with cloudpickle) through
``submit``; the pool runs each on one of its actors and calls joblib back with the outcome on
its result thread. An exception raised by a call comes back as a value (joblib's traceback
capturing wrapper) and joblib raises it in the caller, as with its own backends.
"""

from __future__ import annotations

from typing import Any

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    PoolManagerMixin,
    SequentialBackend,
)

import actorflow
from actorflow.util.multiprocessing import Pool

__all__ = ["ActorflowBackend"]


def _cluster_cpus() -> int:
    if not actorflow.is_initialized():
        actorflow.init()  # ACTORFLOW_ADDRESS/RAY_ADDRESS if set, else a local cluster
    return int(actorflow.cluster_resources().get("CPU", 0))


class ActorflowBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    """joblib backend whose workers are the actors of an ``actorflow`` ``Pool``.

    ``ray_remote_args`` (given to ``parallel_backend`` or to ``Parallel``; the latter wins)
    configure the pool's actors."""

    supports_retrieve_callback = True
    supports_return_generator = True
    _pool: Pool | None = None

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.ray_remote_args = ray_remote_args
        super().__init__(
            nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs
        )

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:  # as joblib: -1 is every CPU (of the cluster), -2 all but one, ...
            return max(_cluster_cpus() + 1 + n_jobs, 1)
        return int(n_jobs)

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        **pool_kwargs: Any,
    ) -> int:
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:  # as joblib's process backends: one job runs in this process
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        remote_args = ray_remote_args if ray_remote_args is not None else self.ray_remote_args
        self._pool = Pool(n_jobs, ray_remote_args=remote_args)
        self.parallel = parallel
        return n_jobs

    def terminate(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()
            pool.join()
        self.reset_batch_stats()
