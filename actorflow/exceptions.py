"""The actorflow exception tree: every error actorflow raises is an ``ActorflowError``.

Names follow Ray's without the ``Ray`` prefix; Ray's spellings (``RayError``, ``RayTaskError``,
``RayActorError``, ``RaySystemError``) are aliases, so that code written for Ray keeps working.
"""

from actorflow._private.errors import *  # noqa: F403
from actorflow._private.errors import __all__ as __all__
