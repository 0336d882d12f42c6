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
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from exchange.audit.events import Happening
from exchange.audit.receipts import ReceiptRow, receipt_happenings
from exchange.audit.writer import AuditWriter, OutRecord
from exchange.catalog.apply import control_topic_specs
from exchange.catalog.published import PublishedCatalog, PublishedCatalogEntry, read_published
from exchange.config import ExchangeSettings
from exchange.dlq import DeadLetter
from exchange.errors import ExchangeError
from exchange.grants.book import GrantBook
from exchange.grants.model import GrantTerms
from exchange.kafka.admin import Admin, plan_topics
from exchange.kafka.control import end_marks, read_table, reader
from exchange.kafka.errors import KafkaOpError
from exchange.kafka.producing import POLL_EVERY, ProducerPool, produce
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup
from exchange.routing import metrics
from exchange.routing.backfill import Backfill, Handover, Progress, ProgressError
from exchange.routing.core import (
    ActiveGrant,
    Delivery,
    EntryRoute,
    Router,
    SourceRecord,
    receipt_digest,
)
from exchange.routing.deliveries import prepare_deliveries
from exchange.runtime import release_free_memory

log = logging.getLogger(__name__)


class RouterError(ExchangeError):
    """The router cannot go on (it exits; a restart resumes from the last committed offsets)."""


@dataclass
class Receipt:
    """What one batch delivered under one grant from one source partition, as it is delivered."""

    grant_id: str
    consumer: str
    entry: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    deliveries: list[Delivery] = field(default_factory=list)

    def row(self) -> ReceiptRow:
        return ReceiptRow(
            grant_id=self.grant_id,
            consumer=self.consumer,
            entry=self.entry,
            source_topic=self.topic,
            partition=self.partition,
            first_offset=self.first_offset,
            last_offset=self.last_offset,
            count=len(self.deliveries),
            delivery_topic=self.deliveries[0].topic if self.deliveries else None,
            sha256=receipt_digest(self.deliveries),
        )


class RouterService:
    def __init__(self, settings: ExchangeSettings, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.actor = f"router.{worker_id}"
        self.registry = Registry(settings.registry)
        self.admin = Admin(settings.kafka)
        self.core = Router(SchemaLookup(self.registry.schema_by_id))
        #: The catalog topic's end offsets when it was read: the catalog check re-reads it only
        #: when they moved (reading 1,000 entries every few seconds is not free). Taken before
        #: the read, so a write in between causes one more read, never a missed one.
        self.catalog_marks = end_marks(settings.kafka, settings.topics.catalog)
        self.catalog: PublishedCatalog = read_published(settings)
        for entry_id, why in self.catalog.unreadable:
            log.error("catalog entry %s skipped: %s", entry_id, why)
        for published in self.catalog.entries.values():
            self.core.set_entry(
                published.source_topic, EntryRoute(published.entry, published.record_schema)
            )
        self.book = GrantBook(settings)
        self.audit = AuditWriter(settings, self.actor)
        #: Made in :meth:`start`, once the grants' delivery topics exist.
        self._producers: ProducerPool | None = None
        self._failures: list[KafkaError] = []
        self._active: dict[str, ActiveGrant] = {}
        self._seen_version = -1
        #: The next instant a grant starts or ends: routing re-reads the grants at that moment.
        self._next_change: dt.datetime | None = None
        self._grant_lock = asyncio.Lock()
        # The live stream and backfills both write audit events through one transactional
        # producer, which must not be used by two threads at once.
        self._audit_lock = asyncio.Lock()
        self.handover = Handover()
        #: Source partitions this worker routes (faust's assignment).
        self.assigned: set[tuple[str, int]] = set()
        self._backfill_slots = asyncio.Semaphore(settings.router.backfill_concurrency)
        self._backfills: set[asyncio.Task[None]] = set()
        #: Called when a backfill fails; the app ends the process (a restart resumes it).
        self.on_failure: Callable[[str], None] = lambda what: None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.book.start(self.settings.kafka.request_timeout_s * 4)
        self.handover = Handover(self._saved_progress())
        prepared = self.prepare_grants(_now())
        # Made after the delivery topics: librdkafka looks up a topic created after the producer
        # once per second in small groups, so the first flush to thousands of new topics would
        # wait for seconds (or minutes).
        self._producers = ProducerPool(
            self.settings.kafka.client_config(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    # Each batch ends with a flush, which sends at once whatever lingers; a long
                    # linger lets a partition's deliveries of one batch go in one append, which
                    # matters when a batch touches thousands of delivery partitions.
                    "linger.ms": 1000,
                    "compression.type": "lz4",
                }
            )
        )
        self.write_audit(self.apply_grants(*prepared))

    def _saved_progress(self) -> list[Progress]:
        # Deployments from before backfills existed lack the topic; `catalog apply` creates it.
        (spec,) = [
            t
            for t in control_topic_specs(self.settings.topics)
            if t.name == self.settings.topics.router_backfills
        ]
        self.admin.apply(
            c
            for c in plan_topics([spec], self.admin.topic_states([spec.name]))
            if c.action == "create"
        )
        return read_progress(self.settings)

    @property
    def producers(self) -> ProducerPool:
        if self._producers is None:
            raise RouterError("the router service was not started", code="NOT_STARTED")
        return self._producers

    def source_topics(self) -> list[str]:
        return sorted(self.core.routes)

    def catalog_changed(self) -> bool:
        """Whether the published catalog now names other source topics than this worker routes
        (blocking: run it in an executor). Re-read only when the catalog topic was written."""
        marks = end_marks(self.settings.kafka, self.settings.topics.catalog)
        if marks == self.catalog_marks:
            return False
        published = read_published(self.settings)
        self.catalog_marks = marks
        return sorted(published.by_topic()) != self.source_topics()

    def close(self) -> None:
        self.handover.release(list(self.assigned))
        self.book.stop()
        if self._producers is not None:
            self._producers.flush(self.settings.kafka.request_timeout_s)
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
        starting: list[tuple[GrantTerms, PublishedCatalogEntry]] = []
        for grant in grants.values():
            status = grant.status(now)
            if grant.state == "approved":
                if status == "pending":
                    upcoming.append(grant.valid_from)
                elif status == "active":
                    upcoming.append(grant.valid_until)
            if status != "active":
                continue
            published = self.catalog.entries.get(grant.entry)
            if published is None:
                log.warning("grant %s names entry %s, not in the catalog", grant.id, grant.entry)
                continue
            current = self._active.get(grant.id)
            if current is not None and current.plan.grant == grant:
                active[grant.id] = current
                continue
            starting.append((grant, published))
            happenings.append(
                _delivery_event("delivery.started", grant, self.actor, ts_ms, "active")
            )
        if starting:
            # A registry client of its own: the client caches every schema it looked up, which
            # for thousands of grants is tens of MB the router never reads again.
            prepare_registry = Registry(self.settings.registry)
            try:
                active.update(
                    prepare_deliveries(self.settings, self.admin, prepare_registry, starting)
                )
            finally:
                prepare_registry.close()
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
            del prepared  # the grants it replaced go with it
            self.start_backfills(self.assigned)
            await self._write_audit(loop, happenings)
            if any(h.kind == "delivery.started" for h in happenings):
                # What preparing made and the replaced grants are garbage now. (At start the
                # CLI's freeze_startup_objects does this.)
                await loop.run_in_executor(None, release_free_memory)

    async def _write_audit(
        self,
        loop: asyncio.AbstractEventLoop,
        happenings: list[Happening],
        records: Sequence[OutRecord] = (),
    ) -> None:
        async with self._audit_lock:
            await loop.run_in_executor(None, self.write_audit, happenings, records)

    # -- records -----------------------------------------------------------------------------

    async def handle(self, records: Sequence[SourceRecord]) -> None:
        loop = asyncio.get_running_loop()
        begun = time.perf_counter()
        await self.refresh_grants(loop)
        started = time.perf_counter()
        # Grants not yet backfilled on a partition start now; the live stream skips them there.
        self.start_backfills({(r.topic, r.partition) for r in records})
        receipts: dict[tuple[str, str, int], Receipt] = {}
        rejections: list[Happening] = []
        dead: list[OutRecord] = []
        delivered: list[tuple[Delivery, str]] = []
        now_ms = int(time.time() * 1000)
        records_in: Counter[str] = Counter()
        denied: Counter[tuple[str, str, str, str]] = Counter()
        for n, record in enumerate(records, 1):
            route = self.core.routes.get(record.topic)
            live = None
            if route is not None and route.grants:
                live = self.handover.live(
                    record.topic, record.partition, record.offset, route.grants
                )
            outcome = self.core.route(record, live)
            entry = outcome.entry or "(unknown)"
            records_in[entry] += 1
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
                denied[entry, consumer, grant_id, "row_filter"] += 1
            self._produce(record, entry, outcome.deliveries, receipts, delivered)
            if n % POLL_EVERY == 0:
                self.producers.poll()
        for entry, count in records_in.items():
            metrics.RECORDS_IN.inc((entry,), count)
        for labels, count in denied.items():
            metrics.DENIED.inc(labels, count)
        routed = time.perf_counter()
        await loop.run_in_executor(None, self._flush)
        flushed = time.perf_counter()
        self._count(delivered)
        rows = (r.row() for r in receipts.values())
        events = receipt_happenings(rows, self.actor, now_ms, backfill=False) + rejections
        await self._write_audit(loop, events, dead)
        audited = time.perf_counter()
        metrics.BATCH_RECORDS.observe(len(records))
        metrics.BATCH_PHASE.labels("grants").observe(started - begun)
        metrics.BATCH_PHASE.labels("route").observe(routed - started)
        metrics.BATCH_PHASE.labels("flush").observe(flushed - routed)
        metrics.BATCH_PHASE.labels("audit").observe(audited - flushed)
        log.debug(
            "batch of %d: grants %.3f s, route %.3f s, flush %.3f s, audit %.3f s",
            len(records),
            started - begun,
            routed - started,
            flushed - routed,
            audited - flushed,
        )

    def _produce(
        self,
        record: SourceRecord,
        entry: str,
        deliveries: Iterable[Delivery],
        receipts: dict[tuple[str, str, int], Receipt],
        delivered: list[tuple[Delivery, str]],
    ) -> None:
        """Hand ``deliveries`` to the producer and note them on their receipts."""
        partitions = (
            self.catalog.entries[entry].entry.partitions if entry in self.catalog.entries else 1
        )
        for d in deliveries:
            # A delivery topic has its entry's partitions.
            producer = self.producers.for_topic(d.topic, partitions)
            produce(producer, d.topic, d.key, d.value, d.headers, self._on_delivery)
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

    def _count(self, delivered: Iterable[tuple[Delivery, str]]) -> None:
        # Counted per batch and label set: a labels() lookup per record costs more than routing.
        acked_s = time.time()
        counts: Counter[tuple[str, str, str]] = Counter()
        latency: dict[str, list[float]] = {}
        for d, entry in delivered:
            if d.value is not None:
                counts[entry, d.consumer, d.grant_id] += 1
                seconds = latency.get(entry)
                if seconds is None:
                    seconds = latency[entry] = []
                seconds.append(max(0.0, acked_s - d.source_ts_ms / 1000))
        for labels, n in counts.items():
            metrics.DELIVERED.inc(labels, n)
        for entry, values in latency.items():
            metrics.ROUTING_LATENCY.observe((entry,), values)

    # -- backfills ---------------------------------------------------------------------------

    def partitions_assigned(self, partitions: Iterable[tuple[str, int]]) -> None:
        self.assigned = {tp for tp in partitions if tp[0] in self.core.routes}
        self.start_backfills(self.assigned)

    def partitions_revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        revoked = set(partitions)
        self.assigned -= revoked
        stopped = self.handover.release(revoked)
        if stopped:
            log.info("stopped %d backfill(s): their partitions were revoked", len(stopped))

    def start_backfills(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Start a backfill for each active grant that has none and is not handed over yet."""
        for topic, partition in partitions:
            route = self.core.routes.get(topic)
            if route is None or not route.grants:
                continue
            for backfill in self.handover.plan(topic, partition, route.grants):
                log.info(
                    "backfilling %s[%d] from offset %d for grant(s) %s",
                    topic,
                    partition,
                    backfill.next_offset,
                    ", ".join(sorted(backfill.grants)),
                )
                task = asyncio.ensure_future(self._backfill(backfill))
                self._backfills.add(task)
                task.add_done_callback(self._backfills.discard)

    async def _backfill(self, backfill: Backfill) -> None:
        try:
            async with self._backfill_slots:
                metrics.BACKFILLS.inc()
                try:
                    await self._run_backfill(backfill)
                finally:
                    metrics.BACKFILLS.dec()
        except Exception:
            log.exception("backfill of %s[%d] failed", backfill.topic, backfill.partition)
            self.on_failure(f"backfilling {backfill.topic}[{backfill.partition}] failed")

    async def _run_backfill(self, backfill: Backfill) -> None:
        """Read the partition from ``next_offset``, deliver to the backfilled grants, hand over.

        Every chunk is delivered and acknowledged, then its receipts and the new progress are
        written in one audit transaction. The consumer is only touched from the executor thread
        that reads, and closed after the last read returned.
        """
        loop = asyncio.get_running_loop()
        consumer = reader(self.settings.kafka)
        consumer.assign([TopicPartition(backfill.topic, backfill.partition, backfill.next_offset)])
        try:
            while not backfill.stopped or backfill.handed_over:
                # Taken over by the live stream: nothing more to read, only the hand-over to save.
                chunk, at_end = (
                    ([], True)
                    if backfill.handed_over
                    else await loop.run_in_executor(
                        None, _read_chunk, consumer, self.settings.router.batch_size
                    )
                )
                if backfill.stopped and not backfill.handed_over:
                    break
                # A grant may have been revoked or expired during the read.
                await self.refresh_grants(loop)
                route = self.core.routes[backfill.topic]
                self.handover.keep(backfill, route.grants)
                receipts: dict[tuple[str, str, int], Receipt] = {}
                delivered: list[tuple[Delivery, str]] = []
                # Stopped meanwhile (e.g. the live stream took over): the chunk is not ours.
                if not backfill.stopped and chunk:
                    for record in chunk:
                        outcome = self.core.route(record, backfill.grants)
                        # Rejected records went to the DLQ when the live stream read them.
                        if outcome.rejection is None:
                            self._produce(
                                record,
                                route.entry.id,
                                outcome.deliveries,
                                receipts,
                                delivered,
                            )
                    backfill.next_offset = chunk[-1].offset + 1
                    await loop.run_in_executor(None, self._flush)
                    self._count(delivered)
                done = self.handover.finish(backfill, at_end)
                if not (chunk or done):
                    continue
                progress = self.handover.progress(backfill, done)
                now_ms = int(time.time() * 1000)
                rows = (r.row() for r in receipts.values())
                events = receipt_happenings(rows, self.actor, now_ms, backfill=True)
                if done:
                    events += [
                        _backfilled_event(self.actor, now_ms, route.entry.id, p) for p in progress
                    ]
                records = [
                    OutRecord(self.settings.topics.router_backfills, p.key, p.encode())
                    for p in progress
                ]
                await self._write_audit(loop, events, records)
                for p in progress:
                    self.handover.saved(p)
                if done:
                    log.info(
                        "backfill of %s[%d] handed over at offset %d",
                        backfill.topic,
                        backfill.partition,
                        backfill.next_offset,
                    )
                    return
        finally:
            consumer.close()

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failures.append(err)

    def _flush(self) -> None:
        remaining = self.producers.flush(self.settings.kafka.request_timeout_s * 4)
        if self._failures:
            failure, self._failures = self._failures[0], []
            raise KafkaOpError.wrap("delivery failed", KafkaException(failure))
        if remaining:
            raise RouterError(f"{remaining} deliveries not acknowledged in time", code="_TIMED_OUT")


def _delivery_event(kind: str, grant: GrantTerms, actor: str, ts_ms: int, why: str) -> Happening:
    return Happening(
        kind=kind,
        actor=actor,
        ts_ms=ts_ms,
        entry=grant.entry,
        consumer=grant.consumer,
        grant_id=grant.id,
        details={
            "why": why,
            "revision": grant.revision,
            "valid_until": grant.valid_until.isoformat(),
        },
    )


def read_progress(settings: ExchangeSettings) -> list[Progress]:
    """Saved backfill progress (committed writes: it is written with the audit receipts)."""
    topic = settings.topics.router_backfills
    saved = []
    for key, value in read_table(settings.kafka, topic, committed=True).items():
        try:
            saved.append(Progress.decode(value))
        except ProgressError as exc:
            # Without it the grant is backfilled again: repeats, which the SDK drops.
            log.warning("ignoring backfill progress %r on %s: %s", key, topic, exc)
    return saved


def _read_chunk(consumer: Consumer, size: int) -> tuple[list[SourceRecord], bool]:
    """Up to ``size`` records; ``True`` when the read reached the partition's end."""
    records: list[SourceRecord] = []
    at_end = False
    # A short wait: under a steady stream the reader must keep pace, not wait for a full chunk.
    for msg in consumer.consume(size, timeout=0.2):
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                raise KafkaOpError.wrap("backfill read failed", KafkaException(err))
            at_end = True
            continue
        at_end = False  # records that arrived after the end was seen
        records.append(
            SourceRecord(
                str(msg.topic()),
                int(msg.partition() or 0),
                int(msg.offset() or 0),
                msg.key(),
                msg.value(),
            )
        )
    # Nothing within the timeout is the end too: the end-of-partition event comes only once.
    return records, at_end or not records


def _backfilled_event(actor: str, ts_ms: int, entry: str, progress: Progress) -> Happening:
    return Happening(
        kind="delivery.backfilled",
        actor=actor,
        ts_ms=ts_ms,
        entry=entry,
        grant_id=progress.grant_id,
        details={
            "source_topic": progress.topic,
            "partition": progress.partition,
            "handover_offset": progress.next_offset,
        },
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
