"""A joblib parallel backend on ``actorflow.util.multiprocessing.Pool`` (Ray's
``ray.util.joblib``)::

    import joblib
    from actorflow.util.joblib import register_actorflow

    register_actorflow()
    with joblib.parallel_backend("actorflow"):
        print(joblib.Parallel(n_jobs=4)(joblib.delayed(abs)(-i) for i in range(10)))

``register_ray()`` registers the same backend under the name "ray", so that code written for
Ray's backend (``with joblib.parallel_backend("ray"): ...``) runs unchanged. ``n_jobs=-1`` uses
every CPU of the cluster; ``ray_remote_args`` (to ``parallel_backend`` or ``Parallel``) are the
options of the pool's actors.
"""

from __future__ import annotations

__all__ = ["register_actorflow", "register_ray"]


def _register(name: str) -> None:
    try:
        from joblib.parallel import register_parallel_backend

        from actorflow.util.joblib.backend import ActorflowBackend
    except ImportError as exc:
        raise ImportError(
            f"the {name!r} joblib backend needs joblib: pip install joblib ({exc})"
        ) from exc
    register_parallel_backend(name, ActorflowBackend)


def register_actorflow() -> None:
    """Register the backend as joblib's "actorflow" (``parallel_backend("actorflow")``)."""
    _register("actorflow")


def register_ray() -> None:
    """Register the backend as joblib's "ray", Ray's name for it."""
    _register("ray")
