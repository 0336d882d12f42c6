"""Connector metrics, labelled by connector and entry (and reason for rejections)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from exchange.metrics.compact import LabelledHistogram

_LABELS = ("connector", "entry")

ROWS_READ = Counter(
    "exchange_connector_rows_read_total", "Source rows read (valid or not).", _LABELS
)
RECORDS_PUBLISHED = Counter(
    "exchange_connector_records_published_total",
    "Change records Kafka acknowledged on the entry's source topic.",
    (*_LABELS, "op"),
)
ROWS_REJECTED = Counter(
    "exchange_connector_rows_rejected_total",
    "Source rows rejected (sent to the DLQ), by reason.",
    (*_LABELS, "reason"),
)
# Observed a batch at a time (ConnectorMetrics.acknowledged): one observe() per record from the
# delivery callback cost more than a tenth of the connector's time.
PUBLISH_LATENCY = LabelledHistogram(
    "exchange_connector_publish_latency_seconds",
    "From handing a record to the producer to Kafka's acknowledgement.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAST_POLL = Gauge(
    "exchange_connector_last_successful_poll_timestamp_seconds",
    "Unix time of the last poll of the source that completed without error.",
    _LABELS,
)
POLL_INTERVAL = Gauge(
    "exchange_connector_poll_interval_seconds",
    "How often the connector polls its source (file and SQL sources; the stale alert's unit).",
    _LABELS,
)
CHECKPOINT_LAG = Gauge(
    "exchange_connector_checkpoint_lag_records",
    "Records sent whose source position is not saved yet (repeated after a crash).",
    _LABELS,
)


class ConnectorMetrics:
    """The metric children of one connector, bound once (labels() is not free per record)."""

    def __init__(self, connector: str, entry: str) -> None:
        self.labels = (connector, entry)
        self.rows_read = ROWS_READ.labels(connector, entry)
        self.last_poll = LAST_POLL.labels(connector, entry)
        self.checkpoint_lag = CHECKPOINT_LAG.labels(connector, entry)
        self.poll_interval = POLL_INTERVAL.labels(connector, entry)
        self._published = {op: RECORDS_PUBLISHED.labels(connector, entry, op) for op in "cudr"}

    def acknowledged(self, changes: Sequence[tuple[str, float]]) -> None:
        """Change records Kafka acknowledged: ``(op, seconds from produce to ack)`` each."""
        if not changes:
            return
        for op, n in Tally(op for op, _ in changes).items():
            self._published[op].inc(n)
        PUBLISH_LATENCY.observe(self.labels, [seconds for _, seconds in changes])

    def rejected(self, reason: str) -> None:
        ROWS_REJECTED.labels(*self.labels, reason).inc()
