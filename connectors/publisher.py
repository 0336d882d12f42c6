"""Sends one connector's change records, dead letters and source positions to Kafka.

The producer is idempotent with ``acks=all``. Every record carries a *marker* (its place in the
source).

With ``publish.exactly_once`` (file and table sources; on by default) the producer is
transactional: the records since the last checkpoint and the position they reach are committed
in one transaction, once per ``checkpoint_interval_s``. Readers of the source topics read
committed (the router does), so a crash leaves nothing of the open transaction visible (the next
start's ``init_transactions`` aborts it) and the restart resumes exactly at the saved position:
no row twice, none lost. A commit costs one round trip to the transaction coordinator per
checkpoint.

Without it (HTTP pushes, whose senders are answered per record), the :class:`AckTracker` turns
acknowledgements into the newest marker that is safe to save, and only that is written to
``exchange.connector-offsets``: a crash repeats what was published since (with the same event
ids) and never skips a row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from connectors.checkpoint import AckGroup, AckTracker, Done
from connectors.config import ConnectorConfig, HttpSourceConfig
from connectors.encoding import MESSAGE_MAX_BYTES, ChangeEncoder, EncoderSpec
from connectors.errors import ConnectorError
from connectors.metrics import ConnectorMetrics
from connectors.platform import PublishedEntry
from connectors.records import Identity, Op, RowError, RowMapper
from exchange.config import ExchangeSettings
from exchange.dlq import DeadLetter
from exchange.kafka.producing import POLL_EVERY, produce
from exchange.kafka.transactions import failure_kind
from exchange.security.acls import connector_transactional_id

log = logging.getLogger(__name__)
#: A rejected row for :meth:`Publisher.send_batch`: its cells, why, and where it was.
Rejection = tuple[Mapping[str, Any] | bytes | None, Sequence[RowError], str]


class Publisher:
    def __init__(
        self,
        settings: ExchangeSettings,
        config: ConnectorConfig,
        target: PublishedEntry,
        metrics: ConnectorMetrics,
        mapper: RowMapper,
    ) -> None:
        self.config = config
        self.target = target
        self.entry = target.entry
        self.metrics = metrics
        self.tracker = AckTracker()
        self._dlq = settings.topics.dlq
        self._offsets = settings.topics.connector_offsets_of(config.department)
        self._compacted = target.entry.retention.compaction
        publish = config.publish
        self._delivery_timeout = publish.delivery_timeout_s
        #: Records and positions committed together (module docstring); the transaction is
        #: begun on the first record, not here (no network in a constructor).
        self.transactional = publish.exactly_once and not isinstance(
            config.source, HttpSourceConfig
        )
        self._in_transaction = False
        self._initialised = False
        extra: dict[str, Any] = {}
        if self.transactional:
            extra["transactional.id"] = connector_transactional_id(config.department, config.id)
            # librdkafka requires it >= the delivery timeout. A transaction a crashed connector
            # left open holds back read_committed readers of its partitions (its own src topic,
            # a DLQ partition) until its restart fences it, or this long at most.
            extra["transaction.timeout.ms"] = int(publish.delivery_timeout_s * 1000)
        try:
            self._producer = Producer(
                settings.kafka.client_config(
                    **{
                        "enable.idempotence": True,
                        "acks": "all",
                        "compression.type": publish.compression,
                        "linger.ms": publish.linger_ms,
                        "delivery.timeout.ms": int(publish.delivery_timeout_s * 1000),
                        "client.id": f"connector-{config.id}",
                        **extra,
                        **publish.producer,
                    }
                )
            )
        except KafkaException as exc:
            # An unknown or invalid setting: librdkafka's message names it.
            error = exc.args[0]
            raise ConnectorError(
                f"{config.where('publish.producer')}: {error.str()}", code=error.name()
            ) from exc
        self.spec = EncoderSpec(
            target.entry,
            target.record_schema,
            mapper.sources,
            target.codec.schema_id,
            target.schema,
            Identity(config.department, config.system, config.id),
            # librdkafka took the setting above, so it is a whole number.
            int(publish.producer.get("message.max.bytes", MESSAGE_MAX_BYTES)),
        )
        self.encoder = ChangeEncoder(self.spec)
        self.mapper = self.encoder.mapper
        self.identity = self.spec.identity
        self._unpolled = 0
        #: ``(op, seconds to acknowledgement)`` of change records acknowledged since the metrics
        #: last counted them: delivery callbacks only append, the metrics take them in bulk.
        self._acked: list[tuple[str, float]] = []
        self._counting = threading.Lock()
        #: Change records and rejected rows sent by this publisher (for summaries).
        self.sent_changes = 0
        self.sent_rejections = 0
        self._state_for: Callable[[Any], dict[str, Any]] = lambda marker: {"marker": marker}
        self._saved_marker: Any = None
        self._saved_completed = 0
        self._last_save = time.monotonic()
        self._offset_errors: list[str] = []

    # -- change records ---------------------------------------------------------------------

    def send(
        self,
        op: Op,
        key: str,
        record: dict[str, Any] | None,
        position: str,
        identity: str,
        marker: Any = None,
        on_done: Done | None = None,
    ) -> str:
        """Publish one change; returns its event id. A delete is followed by a tombstone when
        the topic is compacted, so compaction eventually drops the key."""
        ts_ms = int(time.time() * 1000)
        encoded, event_id = self.encoder.encode(op, key, record, position, identity, ts_ms)
        self.send_encoded(op, key, encoded, marker, on_done)
        return event_id

    def send_encoded(
        self, op: Op, key: str, encoded: bytes, marker: Any = None, on_done: Done | None = None
    ) -> None:
        """Publish a change record encoded beforehand (by :class:`ChangeEncoder`)."""
        self.send_batch(op, [key], [encoded], [], marker, on_done)

    def send_batch(
        self,
        op: Op,
        keys: Sequence[str],
        values: Sequence[bytes],
        rejected: Sequence[Rejection],
        marker: Any = None,
        on_done: Done | None = None,
    ) -> None:
        """Publish change records encoded beforehand and dead letters of the rows rejected
        between them, all under one source position ``marker``: it is safe to save once Kafka
        acknowledged every one of them (and everything before). One :class:`AckGroup` serves as
        the delivery callback of them all."""
        tombstones = op == "d" and self._compacted
        size = len(values) * (2 if tombstones else 1) + len(rejected)
        if not size:
            if marker is not None:
                self.tracker.ack(self.tracker.add(marker, 0))
            if on_done is not None:
                on_done(None)
            return
        self._transaction()
        group = AckGroup(self.tracker, marker, size, op, self._acked, on_done)
        self.sent_changes += len(values)
        topic, producer, change = self.target.topic, self._producer, group.change
        unpolled = self._unpolled
        for key, value in zip(keys, values, strict=True):
            key_bytes = key.encode("utf-8")
            try:
                producer.produce(topic, value, key_bytes, on_delivery=change)
            except (BufferError, KafkaException):
                # The queue is full (wait), or a refusal that produce() reports.
                produce(producer, topic, key_bytes, value, None, change)
            if tombstones:
                # Compaction eventually drops a deleted key.
                produce(producer, topic, key_bytes, None, None, group.other)
            unpolled += 1
            if unpolled >= POLL_EVERY:
                unpolled = 0
                producer.poll(0)
                self._count_acknowledged()
        self._unpolled = unpolled
        for row, errors, position in rejected:
            self._reject(row, errors, position, group)

    def reject(
        self,
        row: Mapping[str, Any] | bytes | None,
        errors: Sequence[RowError],
        position: str,
        marker: Any = None,
        on_done: Done | None = None,
    ) -> None:
        """Send a rejected row to the DLQ with its reasons; it never reaches ``src.*``."""
        self._reject(row, errors, position, AckGroup(self.tracker, marker, 1, None, [], on_done))

    def _reject(
        self,
        row: Mapping[str, Any] | bytes | None,
        errors: Sequence[RowError],
        position: str,
        group: AckGroup,
    ) -> None:
        reason = errors[0].code if errors else "rejected"
        letter = DeadLetter(
            origin="connector",
            reason=reason,
            errors=[{"field": e.field, "code": e.code, "message": e.message} for e in errors],
            entry=self.entry.id,
            department=self.identity.department,
            position=position,
            data=row,
            extra={"connector": self.identity.connector},
        )
        self.metrics.rejected(reason)
        self.sent_rejections += 1
        self._transaction()
        produce(
            self._producer,
            self._dlq,
            self.identity.connector.encode(),
            letter.encode(),
            letter.headers(),
            group.other,
        )
        self._poll_now_and_then()

    def _poll_now_and_then(self) -> None:
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)
            self._count_acknowledged()

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)
        self._count_acknowledged()

    def _count_acknowledged(self) -> None:
        # The HTTP source polls from two threads: callbacks may append meanwhile (only the
        # first n entries are taken), and the lock keeps two counts from taking the same ones.
        with self._counting:
            acked = self._acked
            n = len(acked)
            if not n:
                return
            taken = acked[:n]
            del acked[:n]
        self.metrics.acknowledged(taken)

    # -- positions --------------------------------------------------------------------------

    def begin(self, state_for: Callable[[Any], dict[str, Any]]) -> None:
        """Start a new run of markers (e.g. a new file); ``state_for`` turns a marker into the
        position saved on the offsets topic."""
        self.flush()
        self.tracker.reset()
        self._state_for = state_for
        self._saved_marker = None

    def checkpoint(self, *, force: bool = False) -> None:
        """Save the newest fully acknowledged position, at most once per interval unless forced.

        Raises if any record failed: the position must not move past a lost record.
        """
        self.raise_failures()
        tracker = self.tracker
        self.metrics.checkpoint_lag.set(tracker.sent - self._saved_completed)
        now = time.monotonic()
        if not force and now - self._last_save < self.config.publish.checkpoint_interval_s:
            return
        # In a transaction, the commit makes every record sent so far visible with the position:
        # the newest one sent counts, acknowledged or not.
        marker = tracker.newest if self.transactional else tracker.position
        if marker is None or marker == self._saved_marker:
            return
        self.save_position(self._state_for(marker), marker)

    def save_position(self, position: dict[str, Any], marker: Any = None) -> None:
        """Write ``position`` as the connector's saved position. ``marker`` is the newest record
        it covers (default: the newest acknowledged), so a later checkpoint does not repeat it.
        Transactional: committed now, with every record sent before it."""
        tracker = self.tracker
        self._last_save = time.monotonic()
        value = json.dumps(
            {
                "connector": self.identity.connector,
                "department": self.identity.department,
                "entry": self.entry.id,
                "position": position,
                "saved_at_ms": int(time.time() * 1000),
            },
            ensure_ascii=False,
            sort_keys=True,
        ).encode("utf-8")

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                self._offset_errors.append(f"{self._offsets}: {err.str()} ({err.name()})")

        self._transaction()
        self._producer.produce(
            self._offsets, key=self.identity.connector.encode(), value=value, on_delivery=delivered
        )
        self._producer.poll(0)
        if self.transactional:
            self._commit()
        self._saved_marker = marker if marker is not None else tracker.position
        self._saved_completed = tracker.completed

    # -- transactions -----------------------------------------------------------------------

    def _transaction(self) -> None:
        """Begin a transaction unless one is open. The first call registers the connector's
        ``transactional.id``, which fences an earlier process of it and aborts what that left
        open (its records never become visible)."""
        if not self.transactional or self._in_transaction:
            return
        try:
            if not self._initialised:
                self._producer.init_transactions(self._delivery_timeout)
                self._initialised = True
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise self._failed("cannot begin a transaction", exc) from exc
        self._in_transaction = True

    def _commit(self) -> None:
        """Commit the open transaction (it flushes first); a timeout is tried again, anything
        else aborts it and stops the connector at its saved position."""
        for attempt in range(3):
            try:
                self._producer.commit_transaction(self._delivery_timeout)
                self._in_transaction = False
                self._count_acknowledged()
                return
            except KafkaException as exc:
                kind = failure_kind(exc.args[0])
                if kind == "retriable" and attempt < 2:
                    continue
                error = self._failed("cannot commit the transaction", exc)
                if kind == "abortable":
                    with contextlib.suppress(KafkaException):
                        self._producer.abort_transaction(self._delivery_timeout)
                    self._in_transaction = False
                raise error from exc

    def _failed(self, what: str, exc: KafkaException) -> ConnectorError:
        err = exc.args[0]
        kind = failure_kind(err)
        if kind in ("fenced", "fatal"):
            hint = (
                "another process of this connector (same id) took over; only one may run"
                if kind == "fenced"
                else "the producer cannot go on"
            )
        else:
            hint = "what was sent since the saved position is aborted; a restart sends it again"
        return ConnectorError(f"{what}: {err.str()} ({hint})", code=err.name())

    def settle(self) -> None:
        """Wait for everything sent, then save the position it reaches and wait for that: what
        a source does when it stops, for whatever reason."""
        self.flush()
        self.checkpoint(force=True)
        if self._in_transaction:
            self._commit()  # dead letters sent after the last position
        self.flush()

    def flush(self) -> None:
        """Wait until Kafka acknowledged everything sent; raise if anything failed."""
        remaining = self._producer.flush(self._delivery_timeout)
        self._count_acknowledged()
        if remaining:
            raise ConnectorError(
                f"{remaining} record(s) not acknowledged by Kafka within "
                f"{self._delivery_timeout:g} s; the saved position stays before them",
                code="NOT_ACKNOWLEDGED",
            )
        self.raise_failures()

    def raise_failures(self) -> None:
        failures = self.tracker.errors + self._offset_errors
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise ConnectorError(
                f"Kafka refused a record: {failures[0]}{more}; the saved position stays before "
                "it, so a restart repeats from there",
                code="DELIVERY_FAILED",
            )
