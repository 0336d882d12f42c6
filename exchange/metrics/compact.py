"""Counters and histograms with many label sets, held as plain numbers.

prometheus_client makes a child object per label set (about 0.8 KB for a counter, 3.9 KB for a
histogram of 14 buckets, locks included). A router with 10,000 grants counts deliveries per
grant, so those children alone would take tens of megabytes. These collectors keep a tuple of
label values and a few floats per label set and build the samples when scraped; the exposition
is the same as prometheus_client's own types (without the ``_created`` series).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


class LabelledCounter(Collector):
    """A counter per label set: ``inc(("mzj-entry", "minzheng", "g-1"), 12)``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        # Named like prometheus_client's Counter: the family drops "_total", samples carry it.
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        with self._lock:
            value = self._values.get(labels)
            if value is None:
                _check_labels(self.name, self.labelnames, labels)
                value = 0.0
            self._values[labels] = value + amount

    def value(self, labels: Labels) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            values = list(self._values.items())
        for labels, value in values:
            family.add_metric(list(labels), value)
        return [family]


class _Series:
    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0


class LabelledHistogram(Collector):
    """A histogram per label set; values are observed a batch at a time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"{name}: 'le' is the bucket label of a histogram")
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds != [float(b) for b in buckets]:
            raise ValueError(f"{name}: buckets must be given in increasing order")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._bounds = bounds
        self._series: dict[Labels, _Series] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, labels: Labels, values: Iterable[float]) -> None:
        bounds = self._bounds
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                _check_labels(self.name, self.labelnames, labels)
                series = self._series[labels] = _Series(len(bounds))
            counts = series.counts
            for value in values:
                series.sum += value
                if value == value:  # NaN goes in no bucket (as in prometheus_client)
                    # A value equal to a bound belongs to that bucket (le: less than or equal).
                    counts[bisect.bisect_left(bounds, value)] += 1

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [(labels, list(s.counts), s.sum) for labels, s in self._series.items()]
        for labels, counts, total in series:
            cumulative, running = [], 0
            for bound, count in zip(self._bounds, counts, strict=True):
                running += count
                # The same bucket texts as prometheus_client ("0.005", "1.0", "+Inf").
                le = floatToGoString(bound)  # type: ignore[no-untyped-call]
                cumulative.append((le, float(running)))
            family.add_metric(list(labels), cumulative, total)
        return [family]


def _check_labels(name: str, labelnames: Labels, labels: Labels) -> None:
    # Checked once per label set. A value that is not text would break every later scrape
    # (prometheus_client's own labels() turns values into text; these keep them as given).
    if len(labels) != len(labelnames) or not all(type(v) is str for v in labels):
        raise ValueError(f"{name}: expected text labels {labelnames}, got {labels!r}")
