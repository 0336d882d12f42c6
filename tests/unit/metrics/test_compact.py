from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from exchange.metrics.compact import LabelledCounter, LabelledHistogram

BUCKETS = (0.005, 0.1, 1, 2.5, 60)


def _exposition(registry: CollectorRegistry) -> list[str]:
    # prometheus_client's own types add a `_created` series per label set; ours leave it out.
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_counter_exposes_what_prometheus_clients_counter_does() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LabelledCounter("x_delivered_total", "Deliveries.", ("entry", "grant"), ours_registry)
    theirs = Counter(
        "x_delivered_total", "Deliveries.", ("entry", "grant"), registry=theirs_registry
    )
    for labels, n in [(("e1", "g-1"), 3), (("e1", "g-2"), 1), (("e1", "g-1"), 2.5)]:
        ours.inc(labels, n)
        theirs.labels(*labels).inc(n)
    assert _exposition(ours_registry) == _exposition(theirs_registry)
    assert ours.value(("e1", "g-1")) == 5.5
    assert ours.value(("e2", "g-1")) == 0


def test_histogram_exposes_what_prometheus_clients_histogram_does() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LabelledHistogram("x_latency_seconds", "Latency.", ("entry",), BUCKETS, ours_registry)
    theirs = Histogram(
        "x_latency_seconds", "Latency.", ("entry",), buckets=BUCKETS, registry=theirs_registry
    )
    # Values on a bound, between bounds, above the last bound and zero.
    values = {"e1": [0.0, 0.005, 0.02, 1.0, 2.5, 61.0, float("nan")], "e2": [0.3]}
    for entry, seen in values.items():
        ours.observe((entry,), seen)
        for value in seen:
            theirs.labels(entry).observe(value)
    assert _exposition(ours_registry) == _exposition(theirs_registry)


def test_wrong_labels_and_negative_increments_are_refused() -> None:
    counter = LabelledCounter("y_total", "Y.", ("entry", "grant"), registry=None)
    with pytest.raises(ValueError, match="expected text labels"):
        counter.inc(("e1",))
    with pytest.raises(ValueError, match="expected text labels"):
        counter.inc(("e1", None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(("e1", "g-1"), -1)
    histogram = LabelledHistogram("z_seconds", "Z.", ("entry",), BUCKETS, registry=None)
    with pytest.raises(ValueError, match="expected text labels"):
        histogram.observe(("e1", "g-1"), [1.0])
    with pytest.raises(ValueError, match="bucket label"):
        LabelledHistogram("v_seconds", "V.", ("le",), BUCKETS, registry=None)
    with pytest.raises(ValueError, match="increasing"):
        LabelledHistogram("w_seconds", "W.", (), (1, 0.5), registry=None)
