"""Ray's ``ray.runtime_env``: ``RuntimeEnv`` and ``RuntimeEnvConfig``.

A runtime_env (a dict or a RuntimeEnv) is given to ``init(runtime_env=...)`` for a job, or to
``@remote(runtime_env=...)`` / ``.options(runtime_env=...)`` for a task or actor.
"""

from actorflow._private.runtime_env.spec import RuntimeEnv, RuntimeEnvConfig

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]
