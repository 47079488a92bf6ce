"""``ray.experimental.state.api``: the state API under Ray's older module name."""

from actorflow.util.state import *  # noqa: F403
from actorflow.util.state import __all__ as __all__
