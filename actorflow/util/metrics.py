"""Application metrics, as Ray's ``ray.util.metrics``: ``Counter``, ``Gauge`` and ``Histogram``,
usable in the driver, in tasks and in actors on any node.

    requests = Counter("num_requests", description="...", tag_keys=("route",))
    requests.set_default_tags({"route": "/"})
    requests.inc()                      # actorflow_num_requests_total{route="/"} 1.0

Each shows up on the /metrics endpoint of the node its process runs on, named with the
``actorflow_`` prefix (as Ray prefixes ``ray_``): a process records into its own buffer and
reports the changes to its node about once a second (Config.metrics_report_seconds), so a
record costs no message. Counters and histograms add up over the node's processes; a gauge
keeps the last value set for its tags.

Unlike Ray, which warns and drops a metric with an invalid name, an invalid name or tag key
raises ValueError here, so that a metric never goes missing silently.
"""

from __future__ import annotations

from typing import Any

from actorflow._private.metrics.recorder import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    Family,
    MetricDefinitionError,
    check_family,
    recorder_of,
)
from actorflow._private.worker import context

__all__ = ["Counter", "Gauge", "Histogram", "Metric", "MetricDefinitionError"]

PREFIX = "actorflow_"


class Metric:
    """What the three kinds share: a name, a description, tag keys and default tags."""

    _kind = ""

    def __init__(
        self,
        name: str,
        description: str = "",
        tag_keys: tuple[str, ...] | None = None,
        boundaries: tuple[float, ...] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, got {type(description).__name__}")
        keys = tag_keys or ()
        if not isinstance(keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(keys)}")
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        self._name = name
        self._description = description
        self._tag_keys: tuple[str, ...] = keys
        self._default_tags: dict[str, str] = {}
        self._family = Family(self._kind, description, keys, tuple(boundaries))
        check_family(name, self._family)  # (with the prefix it stays valid)
        self._defined_in: Any = None  # the recorder it was defined in (the process's)

    def __reduce__(self) -> Any:  # Histogram adds its boundaries
        return self.__class__, (self._name, self._description, self._tag_keys)

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags used by every record that does not give them; returns the metric itself."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)}.")
        self._default_tags = dict(default_tags)
        return self

    @property
    def info(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "description": self._description,
            "tag_keys": self._tag_keys,
            "default_tags": self._default_tags,
        }

    def _tag_values(self, tags: dict[str, str] | None) -> tuple[str, ...]:
        final = self._default_tags
        if tags:
            for key, value in tags.items():
                if not isinstance(value, str):
                    raise TypeError(f"Tag values must be str, got {type(value)}.")
                if key not in self._tag_keys:
                    raise ValueError(
                        f"Unrecognized tag key {key} for metric {self._name!r} (its tag keys: "
                        f"{self._tag_keys})."
                    )
            final = {**self._default_tags, **tags}
        missing = [key for key in self._tag_keys if key not in final]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        return tuple(final[key] for key in self._tag_keys)

    def _recorder(self) -> Any:
        recorder = recorder_of(context.ensure_core().runtime)
        if self._defined_in is not recorder:
            recorder.define(PREFIX + self._name, self._family)
            self._defined_in = recorder
        return recorder


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be int or float, got {type(value)}.")
    return float(value)


class Counter(Metric):
    """A count that only goes up (exported as ``actorflow_<name>_total``)."""

    _kind = COUNTER

    def inc(self, value: int | float = 1.0, tags: dict[str, str] | None = None) -> None:
        amount = _number(value)
        if amount <= 0:
            raise ValueError(f"value must be >0, got {value}")
        tag_values = self._tag_values(tags)
        self._recorder().inc(PREFIX + self._name, tag_values, amount)


class Gauge(Metric):
    """A value that goes up and down: the last one set is kept."""

    _kind = GAUGE

    def set(self, value: int | float | None, tags: dict[str, str] | None = None) -> None:
        if value is None:
            return
        amount = _number(value)
        tag_values = self._tag_values(tags)
        self._recorder().set(PREFIX + self._name, tag_values, amount)


class Histogram(Metric):
    """Counts of observed values in buckets with the given upper bounds (and their sum)."""

    _kind = HISTOGRAM

    def __init__(
        self,
        name: str,
        description: str = "",
        boundaries: list[float] | None = None,
        tag_keys: tuple[str, ...] | None = None,
    ) -> None:
        if boundaries is None or len(boundaries) == 0:
            raise ValueError(
                "boundaries argument should be provided when using the Histogram class. "
                'e.g., Histogram("name", boundaries=[1.0, 2.0])'
            )
        for i, boundary in enumerate(boundaries):
            if isinstance(boundary, bool) or not isinstance(boundary, (int, float)):
                raise TypeError(f"boundaries[{i}] must be a number, got {boundary!r}")
            if boundary <= 0:
                raise ValueError(
                    f"Invalid `boundaries` argument at index {i}, {boundaries}. Use positive "
                    f"values for the arguments."
                )
        bounds = tuple(sorted(float(b) for b in set(boundaries)))
        super().__init__(name, description, tag_keys, bounds)
        self.boundaries = boundaries

    def __reduce__(self) -> Any:
        return Histogram, (self._name, self._description, self.boundaries, self._tag_keys)

    @property
    def info(self) -> dict[str, Any]:
        info = super().info
        info["boundaries"] = self.boundaries
        return info

    def observe(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        amount = _number(value)
        tag_values = self._tag_values(tags)
        self._recorder().observe(PREFIX + self._name, tag_values, amount)
