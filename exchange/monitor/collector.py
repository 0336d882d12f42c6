"""The monitor's ``/metrics``: the latest snapshot as Prometheus metric families.

The snapshot is refreshed in a background thread at a fixed interval, not per scrape: a scrape
never waits on Kafka, and several Prometheus servers scraping cost nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exchange.monitor.figures import Snapshot
from exchange.monitor.observer import Observer

log = logging.getLogger(__name__)


def families(snap: Snapshot | None) -> list[Metric]:
    """Every family the monitor exports; empty ones (names, help, labels) when ``snap`` is None."""
    source = CounterMetricFamily(
        "exchange_source_records",
        "Committed records on an entry's source topic (counted by reading), by provider and entry.",
        labels=("department", "entry"),
    )
    router_lag = GaugeMetricFamily(
        "exchange_router_lag_records",
        "Source records the router's group has not committed yet.",
        labels=("entry",),
    )
    workers = GaugeMetricFamily(
        "exchange_router_workers", "Members of the router's consumer group."
    )
    delivered = CounterMetricFamily(
        "exchange_delivery_records",
        "Records delivered to a consumer's delivery topic (the router's audit receipts).",
        labels=("consumer", "entry"),
    )
    consumer_lag = GaugeMetricFamily(
        "exchange_consumer_lag_records",
        "Offsets on a delivery topic a consumer group has not committed yet: its records, and "
        "the markers of the router's transactions among them (one per partition per checkpoint).",
        labels=("consumer", "entry", "group"),
    )
    grants = GaugeMetricFamily("exchange_grants", "Grants by status.", labels=("status",))
    valid_until = GaugeMetricFamily(
        "exchange_grant_valid_until_timestamp_seconds",
        "When an approved grant (active or not yet started) ends, as a Unix time.",
        labels=("grant", "consumer", "entry"),
    )
    dlq = CounterMetricFamily(
        "exchange_dlq_records",
        "Dead letters on the DLQ topic, by origin (connector, router), reason and entry.",
        labels=("origin", "reason", "entry"),
    )
    audit_events = CounterMetricFamily(
        "exchange_audit_events",
        "Committed audit events read from the trail, by kind.",
        labels=("kind",),
    )
    intact = GaugeMetricFamily(
        "exchange_audit_chain_intact",
        "1 while an audit chain verifies (hashes, links, seals), 0 once it is broken.",
        labels=("chain",),
    )
    unreadable = GaugeMetricFamily(
        "exchange_audit_unreadable_records",
        "Records on the audit topic that are not audit events at all.",
    )
    out: list[Metric] = [
        source,
        router_lag,
        workers,
        delivered,
        consumer_lag,
        grants,
        valid_until,
        dlq,
        audit_events,
        intact,
        unreadable,
    ]
    if snap is None:
        return out
    for s in snap.sources:
        source.add_metric((s.department, s.entry), s.records)
        router_lag.add_metric((s.entry,), s.router_lag)
    workers.add_metric((), snap.router_workers)
    for d in snap.deliveries:
        delivered.add_metric((d.consumer, d.entry), d.records)
    for g in snap.lags:
        consumer_lag.add_metric((g.consumer, g.entry, g.group), g.lag)
    statuses: dict[str, int] = {}
    for grant in snap.grants:
        statuses[grant.status] = statuses.get(grant.status, 0) + 1
        if grant.status in ("active", "pending"):
            valid_until.add_metric(
                (grant.grant_id, grant.consumer, grant.entry), grant.valid_until.timestamp()
            )
    for status, count in sorted(statuses.items()):
        grants.add_metric((status,), count)
    for (origin, reason, entry), count in sorted(snap.dlq.items()):
        dlq.add_metric((origin, reason, entry), count)
    for kind, count in sorted(snap.audit.events_by_kind.items()):
        audit_events.add_metric((kind,), count)
    for chain, broken in sorted(snap.audit.chains.items()):
        intact.add_metric((chain,), 1 if broken is None else 0)
    unreadable.add_metric((), snap.audit.unreadable)
    return out


class Monitor(Collector):
    """Refreshes a snapshot every ``interval_s`` and serves it to Prometheus."""

    def __init__(self, observer: Observer, interval_s: float) -> None:
        self.observer = observer
        self.interval_s = interval_s
        self.snapshot: Snapshot | None = None
        self._refreshed_at = 0.0
        self._duration_s = 0.0
        self._failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 30)

    def refresh(self) -> None:
        started = time.monotonic()
        try:
            self.snapshot = self.observer.snapshot(budget_s=min(5.0, self.interval_s))
        except Exception:
            # Kafka may be down for a while: the last figures stay, their age shows it.
            self._failures += 1
            log.exception("taking the platform's figures failed; trying again")
            return
        self._duration_s = time.monotonic() - started
        self._refreshed_at = time.time()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval_s)

    def describe(self) -> Iterator[Metric]:
        yield from families(None)
        yield from health_families(None)

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshot)
        yield from health_families((self._refreshed_at, self._duration_s, self._failures))


def health_families(figures: tuple[float, float, int] | None) -> list[Metric]:
    """The monitor's own health: when it last took the figures, how long that took, failures."""
    refreshed = GaugeMetricFamily(
        "exchange_monitor_last_refresh_timestamp_seconds",
        "Unix time the figures were last taken from Kafka.",
    )
    duration = GaugeMetricFamily(
        "exchange_monitor_refresh_duration_seconds", "How long taking the figures took."
    )
    failures = CounterMetricFamily(
        "exchange_monitor_refresh_failures", "Attempts to take the figures that failed."
    )
    if figures is not None:
        refreshed.add_metric((), figures[0])
        duration.add_metric((), figures[1])
        failures.add_metric((), figures[2])
    return [refreshed, duration, failures]
