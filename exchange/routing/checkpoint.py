"""Checkpoints: the router's deliveries, audit, dead letters, progress and offsets as one commit.

The worker keeps one Kafka transaction open. Routed batches (live and backfill) are staged into
it as they come: deliveries and dead letters produced at once, receipts summed. A checkpoint
seals the transaction: one ``delivery.receipt`` event per consumer, the rejections, backfill
progress, and the source offsets (``send_offsets_to_transaction`` with the consumer group's
metadata), then commits. So a ``read_committed`` reader of a delivery topic sees each delivery
once: a crash or a failed checkpoint aborts everything since the last commit, and the worker
routes it again from the committed offsets and progress.

When: :func:`checkpoint_due`, adaptive. Under light load a checkpoint follows each batch once the
transaction is ``min_interval_s`` old (latency stays low); while batches queue up it waits until
the transaction is ``max_interval_s`` old or holds ``max_deliveries``, so a commit (a few ms of
round trips to the broker) is shared by many records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from exchange.audit.events import Happening
from exchange.audit.receipts import receipt_happenings
from exchange.audit.writer import AuditWriter
from exchange.kafka.changelog import settled_record
from exchange.kafka.transactions import TransactionalProducer, TransactionError
from exchange.routing import metrics
from exchange.routing.backfill import Progress
from exchange.routing.batch import Routed, Stream
from exchange.routing.receipts import Hasher, ReceiptBook
from exchange.routing.state import KeyState

__all__ = ["CheckpointPolicy", "Checkpointer", "Pending", "checkpoint_due"]

TP = tuple[str, int]


@dataclass(frozen=True)
class CheckpointPolicy:
    min_interval_s: float = 0.01
    max_interval_s: float = 0.5
    max_deliveries: int = 50_000


def checkpoint_due(policy: CheckpointPolicy, age_s: float, deliveries: int, backlog: bool) -> bool:
    """Whether to commit a transaction ``age_s`` old holding ``deliveries``; ``backlog``: more
    records are waiting to be routed."""
    if age_s >= policy.max_interval_s or deliveries >= policy.max_deliveries:
        return True
    return not backlog and age_s >= policy.min_interval_s


@dataclass
class Pending:
    """What the open transaction holds, and what it settles once committed."""

    opened: float = field(default_factory=time.monotonic)
    receipts: ReceiptBook = field(default_factory=ReceiptBook)
    happenings: list[Happening] = field(default_factory=list)
    offsets: dict[TP, int] = field(default_factory=dict)
    progress: dict[bytes, Progress] = field(default_factory=dict)
    records: int = 0
    deliveries: int = 0
    #: Counted as delivered once committed: ``(entry, consumer, grant)``.
    delivered: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: Source change times of the deliveries, per entry, for the routing latency.
    source_ms: dict[str, list[int]] = field(default_factory=dict)
    #: Per-key state changes the transaction commits: ``(state, seq)`` in staging order.
    state_seqs: list[tuple[KeyState, int]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.records or self.progress or self.happenings)


class Checkpointer:
    """Stages routed batches into the open transaction and commits them (see module doc).

    Staging runs in the event loop; :meth:`seal` too (it only produces); :meth:`finish` blocks
    on the broker and runs in an executor. The caller must not stage while a checkpoint is
    between :meth:`seal` and the end of :meth:`finish` (the worker's gate).
    """

    def __init__(
        self,
        audit: AuditWriter,
        actor: str,
        group_metadata: Callable[[], Any],
        progress_topic: str,
        policy: CheckpointPolicy,
        changelog_of: Callable[[str], str] | None = None,
    ) -> None:
        self.audit = audit
        #: The state changelog of a source topic's entry (``None``: routing keeps no state).
        self._changelog_of = changelog_of
        self.actor = actor
        self._group_metadata = group_metadata
        self._progress_topic = progress_topic
        self.policy = policy
        self.pending = Pending()
        #: Grant events: not data, so they survive an aborted checkpoint to the next one.
        self.carried: list[Happening] = []
        self._sealed = False
        self._offsets_sent = False
        self.hasher = Hasher()

    @property
    def txn(self) -> TransactionalProducer:
        return self.audit.txn

    def due(self, backlog: bool) -> bool:
        p = self.pending
        if p.empty() and not self.carried:
            return False
        return checkpoint_due(self.policy, time.monotonic() - p.opened, p.deliveries, backlog)

    def stage(self, routed: Routed) -> None:
        """Produce a routed batch's records into the open transaction and note the rest."""
        if self._sealed:
            raise RuntimeError("staging into a sealed checkpoint")
        p = self.pending
        if p.empty():
            p.opened = time.monotonic()
        self.txn.begin()
        receipts = p.receipts
        for record, entry, d in routed.deliveries:
            self.txn.produce_waiting(d.topic, d.key, d.value, d.headers)
            receipts.receipt(
                routed.backfill,
                d.grant_id,
                d.consumer,
                entry,
                record.topic,
                record.partition,
                record.offset,
            ).add(record.offset, d.topic, d.key, d.value, self.hasher)
            if d.value is not None:
                p.delivered[entry, d.consumer, d.grant_id] += 1
                p.source_ms.setdefault(entry, []).append(d.source_ts_ms)
        for stream in routed.streams:
            self._stage_stream(routed.backfill, stream)
        for out in routed.dead:
            self.txn.produce_waiting(out.topic, out.key, out.value, out.headers)
        for source_topic, records in routed.changelog:
            assert self._changelog_of is not None, "state changes without a changelog"
            self.txn.produce_all(self._changelog_of(source_topic), records)
        p.state_seqs.extend(routed.state_seqs)
        p.happenings.extend(routed.happenings)
        p.offsets.update(routed.offsets)
        for progress in routed.progress:
            p.progress[progress.key] = progress
        p.records += routed.records
        p.deliveries += routed.delivery_count()

    def _stage_stream(self, backfill: bool, stream: Stream) -> None:
        p = self.pending
        grant = stream.grant.plan.grant
        topic = stream.grant.topic
        self.txn.produce_all(topic, stream.deliveries)
        for partition, first, last, count, delivered, feed, ts in stream.receipts:
            receipt = p.receipts.receipt(
                backfill, grant.id, grant.consumer, stream.entry, stream.topic, partition, first
            )
            receipt.extend(last, topic, count, feed, self.hasher)
            if delivered:
                p.delivered[stream.entry, grant.consumer, grant.id] += delivered
                p.source_ms.setdefault(stream.entry, []).extend(ts)

    def carry(self, happenings: list[Happening]) -> None:
        self.carried.extend(happenings)

    def seal(self) -> None:
        """Stage the checkpoint's audit events and progress (once, however often finish is
        retried)."""
        if self._sealed:
            return
        p = self.pending
        self.txn.begin()
        now_ms = int(time.time() * 1000)
        self.hasher.wait()
        events = [*self.carried]
        events += receipt_happenings(p.receipts.rows(False), self.actor, now_ms, backfill=False)
        events += receipt_happenings(p.receipts.rows(True), self.actor, now_ms, backfill=True)
        events += p.happenings
        try:
            for progress in p.progress.values():
                self.txn.produce_waiting(
                    self._progress_topic, progress.key, progress.encode(), None
                )
            if self._changelog_of is not None:
                # Each partition's state says how far its committed rows routed (a backfill
                # gives current versions below it), committed with those rows.
                for (topic, partition), offset in sorted(p.offsets.items()):
                    key, value = settled_record(offset)
                    changelog = self._changelog_of(topic)
                    self.txn.produce_waiting(changelog, key, value, None, partition)
            self.audit.stage(events)
        except BufferError as exc:
            # The broker took nothing for the queue-full wait: give this transaction up (the
            # worker aborts and reads its records again) rather than commit half a seal.
            raise TransactionError(
                f"cannot seal a checkpoint: {exc}", code="_QUEUE_FULL", kind="abortable"
            ) from exc
        self._sealed = True

    def finish(self) -> Pending:
        """Send the offsets and commit (blocking). Returns what was committed; on a
        :class:`~exchange.kafka.transactions.TransactionError` the caller retries (retriable)
        or calls :meth:`abort`."""
        p = self.pending
        if p.offsets and not self._offsets_sent:
            self.txn.send_offsets(
                [TopicPartition(t, n, o) for (t, n), o in sorted(p.offsets.items())],
                self._group_metadata(),
            )
            self._offsets_sent = True
        self.txn.commit()
        self.audit.committed()
        self.carried = []
        self._reset()
        for state, seq in p.state_seqs:
            state.commit(seq)
        _count(p)
        return p

    def abort(self) -> None:
        """Give the open transaction up: nothing staged since the last commit happened (the
        grant events are carried to the next checkpoint). Raises if the abort itself fails."""
        self.audit.given_up()
        self._reset()
        self.txn.abort()

    def forget(self) -> None:
        """Drop what is staged without touching the producer (it is gone: fatal or fenced)."""
        self.audit.given_up()
        self._reset()

    def close(self) -> None:
        """Let go of the producer (aborting what is open) and the digest thread."""
        self.audit.close()
        self.hasher.close()

    def _reset(self) -> None:
        self.pending = Pending()
        self._sealed = False
        self._offsets_sent = False


def _count(p: Pending) -> None:
    """Deliveries count as delivered once their transaction committed."""
    for labels, n in p.delivered.items():
        metrics.DELIVERED.inc(labels, n)
    committed_s = time.time()
    for entry, times in p.source_ms.items():
        metrics.ROUTING_LATENCY.observe(
            (entry,), [max(0.0, committed_s - ms / 1000) for ms in times]
        )
