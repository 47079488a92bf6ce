"""The state API's error, at Ray's path (``ray.util.state.exception``)."""

from actorflow.exceptions import RayStateApiException, StateApiError

__all__ = ["RayStateApiException", "StateApiError"]
