"""A node's totals of what its processes reported (recorder.py's reports), as Prometheus
metric families built at scrape time.

Counters and histograms add up across processes; a gauge keeps the last value any process set
for its tags. A report that defines a family differently from the first definition seen here
(another process made a metric of the same name with another kind or other tags) has that
family's series dropped, with a warning in the node's log, so one bad actor cannot break the
endpoint for the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actorflow._private.metrics.recorder import COUNTER, GAUGE, HISTOGRAM, KINDS, Family

logger = logging.getLogger("actorflow.metrics")


class Aggregate:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.counters: dict[tuple[str, tuple], float] = {}
        self.gauges: dict[tuple[str, tuple], float] = {}
        self.histograms: dict[tuple[str, tuple], list] = {}
        self._refused: set[str] = set()  # names whose clashing definitions were logged

    def apply(self, report: list) -> None:
        """Fold one report in; a malformed one raises ValueError (nothing of it applied)."""
        try:
            defined, counters, gauges, histograms = report
            wanted = {
                str(name): Family(str(kind), str(desc), tuple(map(str, keys)), tuple(bounds))
                for name, kind, desc, keys, bounds in defined
            }
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed metrics report: {exc}") from None
        accepted = set()
        for name, family in wanted.items():
            if family.kind not in KINDS:
                continue
            known = self.families.setdefault(name, family)
            if known == family or (known.kind, known.tag_keys) == (family.kind, family.tag_keys):
                accepted.add(name)
            elif name not in self._refused:
                self._refused.add(name)
                logger.warning(
                    "metric %s reported as a %s with tags %s, but it is a %s with tags %s "
                    "here: those series are dropped",
                    name,
                    family.kind,
                    family.tag_keys,
                    known.kind,
                    known.tag_keys,
                )
        tables: list[tuple[dict, list, str]] = [
            (self.counters, counters, COUNTER),
            (self.gauges, gauges, GAUGE),
            (self.histograms, histograms, HISTOGRAM),
        ]
        for table, series, kind in tables:
            for name, tags, value in series:
                known_family = self.families.get(name)
                if name not in accepted or known_family is None or known_family.kind != kind:
                    continue
                key = (name, tuple(str(t) for t in tags))
                if len(key[1]) != len(known_family.tag_keys):
                    continue
                if kind == GAUGE:
                    table[key] = float(value)
                elif kind == COUNTER:
                    table[key] = table.get(key, 0.0) + float(value)
                else:
                    self._add_histogram(key, known_family, value)

    def _add_histogram(self, key: tuple[str, tuple], family: Family, value: Any) -> None:
        if not isinstance(value, list) or len(value) != len(family.boundaries) + 2:
            return
        total = self.histograms.get(key)
        if total is None:
            self.histograms[key] = [float(v) for v in value]
        else:
            for i, v in enumerate(value):
                total[i] += float(v)

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list] = {name: [] for name in self.families}  # all: even empty
        for table in (self.counters, self.gauges, self.histograms):
            for (name, tags), value in table.items():
                by_name.setdefault(name, []).append((tags, value))
        for name, series in sorted(by_name.items()):
            family = self.families[name]
            labels = list(family.tag_keys)
            metric: Any
            if family.kind == COUNTER:
                # prometheus_client adds "_total" to a counter's samples (as Ray's exporter).
                metric = CounterMetricFamily(name, family.description, labels=labels)
                for tags, value in series:
                    metric.add_metric(list(tags), value)
            elif family.kind == GAUGE:
                metric = GaugeMetricFamily(name, family.description, labels=labels)
                for tags, value in series:
                    metric.add_metric(list(tags), value)
            else:
                metric = HistogramMetricFamily(name, family.description, labels=labels)
                for tags, value in series:
                    cumulative, buckets = 0.0, []
                    for bound, count in zip(
                        [*map(_bound, family.boundaries), "+Inf"], value[:-1], strict=True
                    ):
                        cumulative += count
                        buckets.append((bound, cumulative))
                    metric.add_metric(list(tags), buckets, value[-1])
            yield metric


def _bound(value: float) -> str:
    return repr(float(value))
