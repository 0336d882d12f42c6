"""Gathers the platform's figures from Kafka: offsets, groups, grants, the DLQ and the audit trail.

Everything is read from the cluster, never from the processes' own counters, so the figures are
right whichever processes ran (a connector run once and gone, a router restarted) and several
monitors agree. The DLQ, the audit trail and the source topics (their records counted) are
followed: read once, then only what is new, and the audit chains are verified as they grow.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter

from exchange.audit.keys import read_register
from exchange.audit.receipts import RECEIPT, receipt_rows
from exchange.audit.trail import to_read
from exchange.audit.verify import ChainWatch
from exchange.audit.writer import load_key
from exchange.catalog.published import read_published
from exchange.config import ExchangeSettings
from exchange.dlq import ORIGIN_HEADER, REASON_HEADER
from exchange.grants.book import GrantBook
from exchange.kafka.admin import Admin
from exchange.kafka.control import Message, records_behind
from exchange.kafka.follow import Follower, RecordCounter
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup
from exchange.monitor.figures import (
    AuditFigures,
    DeliveryFigures,
    RouterFigures,
    Snapshot,
    SourceFigures,
    delivery_owner,
    grant_figures,
    group_lags,
)
from exchange.monitor.routers import scrape_router
from exchange.routing.deliveries import delivery_topic

log = logging.getLogger(__name__)


class Observer:
    """Holds the clients and the followed topics; :meth:`snapshot` takes the current figures."""

    def __init__(self, settings: ExchangeSettings) -> None:
        self.settings = settings
        self.admin = Admin(settings.kafka)
        self.book = GrantBook(settings)
        self.book.start(settings.kafka.request_timeout_s * 4)
        # Committed only: the router and the connectors write dead letters in transactions, and
        # an aborted one's letters are written again by the retry.
        self._dlq = Follower(settings.kafka, settings.topics.dlq, committed=True)
        # Source topics' records are counted by reading: transactional connectors' markers
        # take offsets too.
        self._sources = RecordCounter(settings.kafka)
        self._audit = Follower(settings.kafka, settings.topics.audit, committed=True)
        self._lookup = SchemaLookup(Registry(settings.registry).schema_by_id)
        self._chains = ChainWatch(load_key(settings), read_register(settings).book)
        self._audit_kinds: Counter[str] = Counter()
        #: Records delivered per delivery topic, summed from the receipts read so far.
        self._delivered: Counter[str] = Counter()
        self._dead: Counter[tuple[str, str, str]] = Counter()

    def close(self) -> None:
        self.book.stop()
        self._dlq.close()
        self._sources.close()
        self._audit.close()

    def snapshot(self, budget_s: float = 5.0) -> Snapshot:
        """The figures now. The followed topics are read for at most ``budget_s`` each, so the
        first snapshot of a long trail may still be catching up (the next ones continue)."""
        now = dt.datetime.now(dt.UTC)
        s = self.settings
        catalog = read_published(s)
        _version, grants = self.book.snapshot()
        counts = self.admin.partition_counts()
        prefix = s.topics.delivery_prefix
        known = {delivery_topic(s, g): (g.consumer, g.entry) for g in grants.values()}
        sources = {e.source_topic: e for e in catalog.entries.values()}
        # Delivery topics of the catalog's entries (dlv.<consumer>.<entry>.<grant>.<generation>),
        # whoever has a grant.
        deliveries = sorted(
            t
            for t in counts
            if t.startswith(prefix) and delivery_owner(t, prefix, known)[1] in catalog.entries
        )
        watched = [*sources, *deliveries]
        tps = [(t, p) for t in watched if t in counts for p in range(counts[t])]
        ends = self.admin.end_offsets(tps)
        starts = self.admin.start_offsets(tps)
        groups = {
            g: self.admin.committed_offsets(g)
            for g in self.admin.consumer_groups()
            if g != s.router.group_id
        }
        router = self.admin.committed_offsets(s.router.group_id)
        source_tps = [tp for tp in tps if tp[0] in sources]
        behind = records_behind(s.kafka, source_tps, ends, starts, router)
        records = self._sources.update({t: counts[t] for t in sources if t in counts}, budget_s)
        self._follow_dlq(budget_s)
        self._follow_audit(budget_s)
        verified = self._chains.result
        members = self.admin.group_member_hosts(s.router.group_id)
        return Snapshot(
            taken_at=now,
            router_workers=len(members),
            routers=self._routers(members),
            sources=[
                SourceFigures(
                    entry=e.entry.id,
                    department=e.entry.provider,
                    topic=topic,
                    records=(
                        records[topic]
                        if topic not in self._sources.refused
                        else sum(ends.get((topic, p), 0) for p in range(counts.get(topic, 0)))
                    ),
                    router_lag=sum(behind.get((topic, p), 0) for p in range(counts.get(topic, 0))),
                )
                for topic, e in sorted(sources.items())
            ],
            deliveries=[
                DeliveryFigures(*delivery_owner(t, prefix, known), t, self._delivered[t])
                for t in deliveries
            ],
            lags=group_lags(groups, ends, prefix, known, starts),
            grants=grant_figures(grants.values(), now),
            dlq=dict(self._dead),
            audit=AuditFigures(
                events=sum(self._audit_kinds.values()),
                events_by_kind=dict(self._audit_kinds),
                chains={
                    c: None
                    if r.broken is None
                    else f"{r.broken.breach} at {r.broken.position}: {r.broken.message}"
                    for c, r in verified.chains.items()
                },
                unreadable=len(verified.unreadable),
            ),
            problems=[f"catalog entry {e}: {why}" for e, why in catalog.unreadable],
        )

    def _routers(self, members: list[tuple[str, str]]) -> list[RouterFigures]:
        """Each worker's grant book, from its own metrics (not when they are on a random port)."""
        port = self.settings.router.metrics_port
        if not port:
            return []
        return [scrape_router(worker, host, port) for worker, host in members]

    @property
    def caught_up(self) -> bool:
        """The DLQ, the audit trail and the source topics were read to their ends by the last
        snapshot."""
        return self._dlq.caught_up and self._audit.caught_up and self._sources.caught_up

    def _follow_dlq(self, budget_s: float) -> None:
        for msg in self._dlq.read_new(budget_s):
            self._dead[_dead_letter_labels(msg)] += 1

    def _follow_audit(self, budget_s: float) -> None:
        reads = [to_read(self._lookup, m) for m in self._audit.read_new(budget_s)]
        known = self._chains.keys.keys
        if any(
            r.event is not None
            and (r.event.kind.startswith("audit.key.") or r.event.signer not in (None, *known))
            for r in reads
        ):
            # The register changed (its events are among these) or a key we do not know signed.
            self._chains.keys = read_register(self.settings).book
        self._chains.add(reads)
        self._audit_kinds.update(r.event.kind for r in reads if r.event is not None)
        # Delivered records from the router's receipts: a delivery topic's offsets also count
        # the markers of the router's transactions (one per partition per checkpoint).
        for r in reads:
            if r.event is not None and r.event.kind == RECEIPT:
                for row in receipt_rows(r.event):
                    if row.delivery_topic is not None:
                        self._delivered[row.delivery_topic] += row.count


def _dead_letter_labels(msg: Message) -> tuple[str, str, str]:
    """(origin, reason, entry) of a dead letter; what cannot be read is labelled so."""
    headers = dict(msg.headers)
    origin = headers.get(ORIGIN_HEADER, b"unknown").decode("utf-8", "replace")
    reason = headers.get(REASON_HEADER, b"unknown").decode("utf-8", "replace")
    entry = "(unknown)"
    try:
        value = json.loads(msg.value or b"")
        entry = str(value.get("entry") or "(unknown)")
    except (ValueError, AttributeError):
        pass
    return origin, reason, entry
