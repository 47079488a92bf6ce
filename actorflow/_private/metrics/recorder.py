"""What one process measured since it last reported: counters, gauges and histograms, each a
family (name, kind, description, tag keys, bucket bounds) with one series per tag-value tuple.

Every process has one Recorder (``recorder_of(runtime)``). User metrics (actorflow.util.metrics)
and the runtime's sampled request latencies record into it from any thread; ``take`` hands the
deltas over as a report (plain msgpack types), which the process's node folds into the totals
it serves on /metrics (aggregate.py). Recording is a lock, a dict lookup and an addition: no
message per record, no Prometheus object per series in the process that records.
"""

from __future__ import annotations

import bisect
import re
import threading
from typing import Any, NamedTuple

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
KINDS = (COUNTER, GAUGE, HISTOGRAM)

# Prometheus's rule for metric and label names (label names may not hold ':').
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Requests a process makes are timed one in this many (the loop reads a clock only for those).
LATENCY_SAMPLE_EVERY = 16
LATENCY_FAMILY = "actorflow_rpc_request_latency_seconds"
LATENCY_BOUNDS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0)


class Family(NamedTuple):
    kind: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...]  # a histogram's bucket upper bounds (others: ())


class MetricDefinitionError(ValueError):
    """A metric name or its tags break Prometheus's rules, or clash with another metric."""


def check_family(name: str, family: Family) -> None:
    if not METRIC_NAME.match(name):
        raise MetricDefinitionError(
            f"invalid metric name {name!r}: names may hold only letters, digits, '_' and ':', "
            f"and may not start with a digit"
        )
    for key in family.tag_keys:
        if not LABEL_NAME.match(key) or key.startswith("__"):
            raise MetricDefinitionError(
                f"metric {name!r}: invalid tag key {key!r} (letters, digits and '_', not "
                f"starting with a digit or '__')"
            )
    if len(set(family.tag_keys)) != len(family.tag_keys):
        raise MetricDefinitionError(f"metric {name!r}: tag keys repeat: {family.tag_keys}")
    if family.kind == HISTOGRAM and "le" in family.tag_keys:
        raise MetricDefinitionError(f"histogram {name!r}: 'le' is reserved for its buckets")


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.families: dict[str, Family] = {}
        self._counts: dict[tuple[str, tuple], float] = {}  # counter deltas
        self._gauges: dict[tuple[str, tuple], float] = {}  # last values set
        self._histograms: dict[tuple[str, tuple], list] = {}  # [bucket counts..., sum]
        self._sampled = 0

    def define(self, name: str, family: Family) -> None:
        """Declare a family; the same definition again is fine (a task that makes its metric
        on every run), another one under the same name is an error."""
        check_family(name, family)
        with self._lock:
            known = self.families.get(name)
            if known is None:
                self.families[name] = family
            elif (known.kind, known.tag_keys, known.boundaries) != (
                family.kind,
                family.tag_keys,
                family.boundaries,
            ):
                raise MetricDefinitionError(
                    f"metric {name!r} is already defined in this process as a {known.kind} "
                    f"with tag keys {known.tag_keys}"
                    + (f" and boundaries {list(known.boundaries)}" if known.boundaries else "")
                    + f"; it cannot also be a {family.kind} with tag keys {family.tag_keys}"
                )

    def inc(self, name: str, tags: tuple, value: float) -> None:
        key = (name, tags)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + value

    def set(self, name: str, tags: tuple, value: float) -> None:
        with self._lock:
            self._gauges[(name, tags)] = value

    def observe(self, name: str, tags: tuple, value: float) -> None:
        bounds = self.families[name].boundaries
        key = (name, tags)
        with self._lock:
            series = self._histograms.get(key)
            if series is None:
                series = self._histograms[key] = [0] * (len(bounds) + 1) + [0.0]
            series[bisect.bisect_left(bounds, value)] += 1
            series[-1] += value

    # -- the runtime's request latencies (the hook Runtime.on_latency calls) ----------------

    def sample_latency(self) -> bool:
        """Should the request being sent now be timed? (loop thread only)"""
        self._sampled += 1
        return self._sampled % LATENCY_SAMPLE_EVERY == 0

    def request_latency(self, method: str, seconds: float) -> None:
        self.observe(LATENCY_FAMILY, (method,), seconds)

    # -- reporting ------------------------------------------------------------------------------

    def take(self) -> list | None:
        """The deltas since the last take, as a report, and forget them; None if nothing was
        recorded. [families, counters, gauges, histograms]: families as [name, kind,
        description, tag_keys, boundaries]; series as [name, tag_values, value] (a
        histogram's value: its bucket counts then its sum)."""
        with self._lock:
            if not (self._counts or self._gauges or self._histograms):
                return None
            counts, self._counts = self._counts, {}
            gauges, self._gauges = self._gauges, {}
            histograms, self._histograms = self._histograms, {}
            used = {key[0] for key in (*counts, *gauges, *histograms)}
            families = [[n, *self.families[n]] for n in used if n in self.families]
        return [
            [[n, k, d, list(t), list(b)] for n, k, d, t, b in families],
            [[n, list(t), v] for (n, t), v in counts.items()],
            [[n, list(t), v] for (n, t), v in gauges.items()],
            [[n, list(t), v] for (n, t), v in histograms.items()],
        ]


def recorder_of(runtime: Any) -> Recorder:
    """The process's one Recorder, hung on its runtime (made on first use, which also starts
    the sampling of the runtime's request latencies)."""
    recorder = getattr(runtime, "metrics", None)
    if recorder is None:
        recorder = runtime.metrics = Recorder()
        recorder.define(
            LATENCY_FAMILY,
            Family(
                HISTOGRAM,
                "Time from sending a request to its answer, by target and handler, for one "
                f"request in {LATENCY_SAMPLE_EVERY} that this node's processes make",
                ("Method",),
                LATENCY_BOUNDS,
            ),
        )
        runtime.latency_recorder = recorder
    return recorder
