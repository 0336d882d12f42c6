"""The router's moving parts around the pure core: grants in, deliveries, DLQ and audit out.

A batch of source records is routed, every delivery is written and acknowledged by Kafka, then
the batch's audit events (a receipt per grant and source partition, each rejection) are committed
together with the rejected records' DLQ copies, and only then does faust commit the source
offsets. A crash at any point repeats deliveries (same event ids, which the SDK drops), never
loses one.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from exchange.audit.events import Happening
from exchange.audit.writer import AuditWriter, OutRecord
from exchange.catalog.published import PublishedCatalog, read_published
from exchange.config import ExchangeSettings
from exchange.dlq import DeadLetter
from exchange.errors import ExchangeError
from exchange.grants.book import GrantBook
from exchange.grants.model import Grant
from exchange.kafka.admin import Admin
from exchange.kafka.errors import KafkaOpError
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup
from exchange.routing import metrics
from exchange.routing.core import (
    ActiveGrant,
    Delivery,
    EntryRoute,
    Router,
    SourceRecord,
    receipt_digest,
)
from exchange.routing.deliveries import prepare_delivery

log = logging.getLogger(__name__)


class RouterError(ExchangeError):
    """The router cannot go on (it exits; a restart resumes from the last committed offsets)."""


@dataclass
class Receipt:
    """What one batch delivered under one grant from one source partition."""

    grant_id: str
    consumer: str
    entry: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    deliveries: list[Delivery] = field(default_factory=list)

    def happening(self, actor: str, ts_ms: int) -> Happening:
        return Happening(
            kind="delivery.receipt",
            actor=actor,
            ts_ms=ts_ms,
            entry=self.entry,
            consumer=self.consumer,
            grant_id=self.grant_id,
            details={
                "source_topic": self.topic,
                "partition": self.partition,
                "first_offset": self.first_offset,
                "last_offset": self.last_offset,
                "count": len(self.deliveries),
                "delivery_topic": self.deliveries[0].topic if self.deliveries else None,
                "sha256": receipt_digest(self.deliveries),
            },
        )


class RouterService:
    def __init__(self, settings: ExchangeSettings, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.actor = f"router.{worker_id}"
        self.registry = Registry(settings.registry)
        self.admin = Admin(settings.kafka)
        self.core = Router(SchemaLookup(self.registry.schema_by_id))
        self.catalog: PublishedCatalog = read_published(settings)
        for entry_id, why in self.catalog.unreadable:
            log.error("catalog entry %s skipped: %s", entry_id, why)
        for published in self.catalog.entries.values():
            self.core.set_entry(
                published.source_topic, EntryRoute(published.entry, published.record_schema)
            )
        self.book = GrantBook(settings)
        self.audit = AuditWriter(settings, self.actor)
        self.producer = Producer(
            settings.kafka.client_config(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "compression.type": "lz4",
                }
            )
        )
        self._failures: list[KafkaError] = []
        self._active: dict[str, ActiveGrant] = {}
        self._seen_version = -1
        #: The next instant a grant starts or ends: routing re-reads the grants at that moment.
        self._next_change: dt.datetime | None = None
        self._grant_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.book.start(self.settings.kafka.request_timeout_s * 4)
        self.write_audit(self.apply_grants(*self.prepare_grants(_now())))

    def source_topics(self) -> list[str]:
        return sorted(self.core.routes)

    def close(self) -> None:
        self.book.stop()
        self.producer.flush(self.settings.kafka.request_timeout_s)
        self.audit.close()

    # -- grants ------------------------------------------------------------------------------

    def grants_due(self, now: dt.datetime) -> bool:
        return self.book.version != self._seen_version or (
            self._next_change is not None and now >= self._next_change
        )

    def prepare_grants(
        self, now: dt.datetime
    ) -> tuple[int, dict[str, ActiveGrant], list[Happening], dt.datetime | None]:
        """Blocking part (topics, schemas): which grants deliver as of ``now``."""
        version, grants = self.book.snapshot()
        ts_ms = int(now.timestamp() * 1000)
        active: dict[str, ActiveGrant] = {}
        happenings: list[Happening] = []
        upcoming: list[dt.datetime] = []
        for grant in grants.values():
            status = grant.status(now)
            if grant.state == "approved":
                if status == "pending":
                    upcoming.append(grant.request.valid_from)
                elif status == "active":
                    upcoming.append(grant.request.valid_until)
            if status != "active":
                continue
            published = self.catalog.entries.get(grant.request.entry)
            if published is None:
                log.warning(
                    "grant %s names entry %s, not in the catalog", grant.id, grant.request.entry
                )
                continue
            current = self._active.get(grant.id)
            if current is not None and current.plan.grant == grant:
                active[grant.id] = current
                continue
            active[grant.id] = prepare_delivery(
                self.settings, self.admin, self.registry, grant, published
            )
            happenings.append(
                _delivery_event("delivery.started", grant, self.actor, ts_ms, "active")
            )
        for grant_id, gone in self._active.items():
            if grant_id not in active or active[grant_id].plan.grant != gone.plan.grant:
                latest = grants.get(grant_id)
                why: str = latest.status(now) if latest is not None else "withdrawn"
                if latest is not None and latest.state == "approved" and why == "active":
                    why = "amended"
                happenings.append(
                    _delivery_event("delivery.stopped", gone.plan.grant, self.actor, ts_ms, why)
                )
        return version, active, happenings, min(upcoming, default=None)

    def apply_grants(
        self,
        version: int,
        active: dict[str, ActiveGrant],
        happenings: list[Happening],
        next_change: dt.datetime | None,
    ) -> list[Happening]:
        """Non-blocking part, in the event loop: swap the routing tables at once."""
        by_topic: dict[str, list[ActiveGrant]] = {t: [] for t in self.core.routes}
        for grant in active.values():
            topic = self.catalog.entries[grant.plan.entry.id].source_topic
            by_topic.setdefault(topic, []).append(grant)
        for topic, grants in by_topic.items():
            if topic in self.core.routes:
                self.core.set_grants(topic, grants)
                metrics.ACTIVE_GRANTS.labels(self.core.routes[topic].entry.id).set(len(grants))
        self._active = active
        self._seen_version = version
        self._next_change = next_change
        for h in happenings:
            log.info("%s: grant %s (%s)", h.kind, h.grant_id, h.details.get("why"))
        return happenings

    def write_audit(self, happenings: list[Happening], dead: Sequence[OutRecord] = ()) -> None:
        if happenings or dead:
            self.audit.write(happenings, dead)

    async def refresh_grants(self, loop: asyncio.AbstractEventLoop) -> None:
        async with self._grant_lock:
            now = _now()
            if not self.grants_due(now):
                return
            prepared = await loop.run_in_executor(None, self.prepare_grants, now)
            happenings = self.apply_grants(*prepared)
            await loop.run_in_executor(None, self.write_audit, happenings)

    # -- records -----------------------------------------------------------------------------

    async def handle(self, records: Sequence[SourceRecord]) -> None:
        loop = asyncio.get_running_loop()
        await self.refresh_grants(loop)
        receipts: dict[tuple[str, str, int], Receipt] = {}
        rejections: list[Happening] = []
        dead: list[OutRecord] = []
        delivered: list[tuple[Delivery, str]] = []
        now_ms = int(time.time() * 1000)
        for record in records:
            outcome = self.core.route(record)
            entry = outcome.entry or "(unknown)"
            metrics.RECORDS_IN.labels(entry).inc()
            if outcome.rejection is not None:
                rejected = outcome.rejection
                metrics.REJECTED.labels(entry, rejected.reason).inc()
                letter = DeadLetter(
                    origin="router",
                    reason=rejected.reason,
                    errors=rejected.errors,
                    entry=outcome.entry,
                    department=rejected.department,
                    position=record.position,
                    data=record.value,
                    extra={"key_base64": _b64(record.key)},
                )
                dead.append(
                    OutRecord(
                        self.settings.topics.dlq, record.key, letter.encode(), letter.headers()
                    )
                )
                rejections.append(
                    Happening(
                        kind="record.rejected",
                        actor=self.actor,
                        ts_ms=now_ms,
                        entry=outcome.entry,
                        details={
                            "reason": rejected.reason,
                            "errors": list(rejected.errors),
                            "position": record.position,
                            "department": rejected.department,
                        },
                    )
                )
                continue
            for grant_id, consumer in outcome.filtered:
                metrics.DENIED.labels(entry, consumer, grant_id, "row_filter").inc()
            for d in outcome.deliveries:
                self.producer.produce(
                    d.topic,
                    key=d.key,
                    value=d.value,
                    headers=list(d.headers),
                    on_delivery=self._on_delivery,
                )
                delivered.append((d, entry))
                receipt_key = (d.grant_id, record.topic, record.partition)
                receipt = receipts.get(receipt_key)
                if receipt is None:
                    receipt = receipts[receipt_key] = Receipt(
                        d.grant_id,
                        d.consumer,
                        entry,
                        record.topic,
                        record.partition,
                        record.offset,
                        record.offset,
                    )
                receipt.last_offset = record.offset
                receipt.deliveries.append(d)
            self.producer.poll(0)
        await loop.run_in_executor(None, self._flush)
        acked_s = time.time()
        for d, entry in delivered:
            if d.value is not None:
                metrics.DELIVERED.labels(entry, d.consumer, d.grant_id).inc()
                metrics.ROUTING_LATENCY.labels(entry).observe(
                    max(0.0, acked_s - d.source_ts_ms / 1000)
                )
        events = [r.happening(self.actor, now_ms) for r in receipts.values()] + rejections
        await loop.run_in_executor(None, self.write_audit, events, dead)

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failures.append(err)

    def _flush(self) -> None:
        remaining = self.producer.flush(self.settings.kafka.request_timeout_s * 4)
        if self._failures:
            failure, self._failures = self._failures[0], []
            raise KafkaOpError.wrap("delivery failed", KafkaException(failure))
        if remaining:
            raise RouterError(f"{remaining} deliveries not acknowledged in time", code="_TIMED_OUT")


def _delivery_event(kind: str, grant: Grant, actor: str, ts_ms: int, why: str) -> Happening:
    return Happening(
        kind=kind,
        actor=actor,
        ts_ms=ts_ms,
        entry=grant.request.entry,
        consumer=grant.request.consumer,
        grant_id=grant.id,
        details={
            "why": why,
            "revision": grant.revision,
            "valid_until": grant.request.valid_until.isoformat(),
        },
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
