"""Routing a batch of source records: what to write for it, before anything is written.

:func:`route_live` and :func:`route_backfill` route a batch and return a :class:`Routed`: the
deliveries, dead letters and audit happenings the batch produces, and (live) the source offsets
it covers. Nothing is written here, and nothing is fetched: the worker resolves the batch's
schema ids first (:class:`~exchange.routing.kernel.Kernels`). The checkpointer stages a
``Routed`` into its open transaction. Keeping the two apart lets the worker route the next batch
while the previous checkpoint commits, and lets a batch routed before a failed checkpoint be
dropped whole.

Each entry's records go through the compiled kernel a batch at a time; the records it leaves to
Python (every rejection, anything it is not sure of) go through the core one by one, which gives
them their exact reasons. If such a record turns out to be deliverable, the whole entry's batch
is routed by the core instead, so each delivery partition keeps the source order.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exchange.audit.events import Happening
from exchange.audit.writer import OutRecord
from exchange.dlq import DeadLetter, letter_key
from exchange.errors import ExchangeError
from exchange.routing import metrics
from exchange.routing.backfill import Handover, Progress
from exchange.routing.core import (
    ActiveGrant,
    Delivery,
    Outcome,
    Refusal,
    Rejection,
    Router,
    SourceRecord,
)
from exchange.routing.kernel import Deliveries, Feed, Kernels
from exchange.routing.state import KeyState, StateBatch
from exchange.rules.checksums import today_ordinal

__all__ = [
    "Routed",
    "Run",
    "Stream",
    "finish_live",
    "plan_live",
    "route_backfill",
    "route_live",
    "run_kernels",
    "source_record",
]

TP = tuple[str, int]
#: What the kernel returns for one entry's records (see ``exchange/_kernel.pyi``).
KernelResult = tuple[
    list[int], list[int], list[Any], list[tuple[int, int]], list[tuple[int, Any]], Any
]
#: Per source partition, its per-key state (``exchange.routing.state``).
States = Mapping[TP, KeyState]
#: ``(topic, partition, first offset, last offset, messages)``: a batch's records of one source
#: partition (:func:`exchange.routing.kernel.partition_runs`).
Run = tuple[str, int, int, int, list[Any]]


@dataclass
class Stream:
    """What the kernel delivers to one grant from one entry's records in a batch, as columns."""

    entry: str
    topic: str
    grant: ActiveGrant
    #: Keys, values, partitions (-1: librdkafka picks it) and the headers of the few that have
    #: them (tombstones), held by the kernel until they are produced.
    deliveries: Deliveries
    #: Per source partition: ``(partition, first offset, last offset, deliveries, deliveries
    #: with a value, digest feed (those deliveries, named in ``deliveries``), source ts_ms of
    #: those with a value)``.
    receipts: list[tuple[int, int, int, int, int, Feed, list[int]]]


@dataclass
class Routed:
    """What one batch (live) or chunk (backfill) asks to be written."""

    backfill: bool
    #: Deliveries the core made: ``(record, entry, delivery)`` in the order they are produced.
    deliveries: list[tuple[SourceRecord, str, Delivery]] = field(default_factory=list)
    #: Deliveries the kernel made, per entry and grant.
    streams: list[Stream] = field(default_factory=list)
    dead: list[OutRecord] = field(default_factory=list)
    happenings: list[Happening] = field(default_factory=list)
    #: Live: the next offset per source partition once this batch is committed.
    offsets: dict[TP, int] = field(default_factory=dict)
    #: Backfill: its progress once this chunk is committed.
    progress: list[Progress] = field(default_factory=list)
    records: int = 0
    #: Per-key state changes made pending by this batch: ``(state, seq)``, for
    #: ``state.commit(seq)`` once the batch's transaction committed.
    state_seqs: list[tuple[KeyState, int]] = field(default_factory=list)
    #: Those changes as changelog records: ``(source topic, records)``, each record to the
    #: partition of its source partition's number.
    changelog: list[tuple[str, Deliveries]] = field(default_factory=list)

    def delivery_count(self) -> int:
        return len(self.deliveries) + sum(len(s.deliveries) for s in self.streams)


def source_record(msg: Any) -> SourceRecord:
    return SourceRecord(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())


class _Batch:
    """One entry's records of a batch, with the grants each partition delivers to."""

    def __init__(
        self,
        kernels: Kernels,
        core: Router,
        topic: str,
        messages: list[Any],
        starts: Any,
        states: dict[int, KeyState] | None = None,
        settled: dict[int, int] | None = None,
    ) -> None:
        self.core = core
        #: Per source partition of this batch, its per-key state (if routing keeps one).
        self.states = states or {}
        #: A backfill's: per source partition, the offset the state's committed rows routed up
        #: to (records below it are given only as their key's current version).
        self.settled = settled or {}
        self.route = core.routes[topic]
        self.compiled = kernels.get(topic, self.route)
        self.topic = topic
        self.messages = messages
        #: Per grant (kernel order): source partition -> first offset delivered to it.
        self.starts: list[dict[int, int]] = starts

    def superseded(self, record: SourceRecord, event_id: str) -> bool:
        """The kernel's rule for a backfill (``superseded`` in ``kernel/src/lib.rs``): a
        record below the live state's committed offset that is not its key's version there."""
        settled = self.settled.get(record.partition)
        state = self.states.get(record.partition)
        if settled is None or state is None or record.key is None:
            return False
        return record.offset < settled and not state.is_current(record.key, event_id.encode())

    def live(self, record: SourceRecord) -> set[str]:
        return {
            g.key
            for g, starts in zip(self.compiled.grants, self.starts, strict=True)
            if (start := starts.get(record.partition)) is not None and record.offset >= start
        }


def route_live(
    core: Router,
    kernels: Kernels,
    handover: Handover,
    runs: Sequence[Run],
    actor: str,
    dlq_topic: str,
    states: States | None = None,
) -> Routed:
    """Validate and route a live batch (its schema ids resolved): grants handed over to the
    live stream get deliveries, rejected records a dead letter and a ``record.rejected``
    happening. :func:`plan_live`, :func:`run_kernels` and :func:`finish_live` in one; the
    worker runs the middle one in a thread of its own."""
    plan = plan_live(core, kernels, handover, runs, states)
    return finish_live(plan, run_kernels(plan), actor, dlq_topic)


def plan_live(
    core: Router,
    kernels: Kernels,
    handover: Handover,
    runs: Sequence[Run],
    states: States | None = None,
) -> list[_Batch]:
    """A live batch by entry, with the grants each partition delivers to (the handover notes
    how far the live stream got, so this runs in the event loop)."""
    by_topic: dict[str, list[Run]] = {}
    for run in runs:
        by_topic.setdefault(run[0], []).append(run)
    out = []
    for topic, topic_runs in by_topic.items():
        route = core.routes[topic]
        grants = kernels.get(topic, route).grants
        starts: list[dict[int, int]] = [{} for _ in grants]
        for _topic, partition, first, last, _messages in topic_runs:
            spans = handover.live_span(topic, partition, first, last, route.grants)
            for i, g in enumerate(grants):
                start = spans.get(g.key)
                if start is not None:
                    starts[i][partition] = start
        messages = [m for run in topic_runs for m in run[4]]
        kept = {
            run[1]: states[topic, run[1]]
            for run in topic_runs
            if states is not None and (topic, run[1]) in states
        }
        out.append(_Batch(kernels, core, topic, messages, starts, kept))
    return out


def run_kernels(plan: Sequence[_Batch]) -> list[KernelResult]:
    """The compiled kernel over each entry's records: any thread (it works without the GIL)."""
    today = today_ordinal()
    return [
        b.compiled.kernel.route(
            b.topic, b.messages, b.starts, today, b.states or None, b.settled or None
        )
        for b in plan
    ]


def finish_live(
    plan: Sequence[_Batch],
    results: Sequence[KernelResult],
    actor: str,
    dlq_topic: str,
    reported: Mapping[TP, int] | None = None,
) -> Routed:
    """The kernel's results as a :class:`Routed`, with the core routing what it left.
    ``reported``: per partition, the offset below which rejections were reported before (a
    state rebuilt from the log start, ``rebuild.py``)."""
    out = Routed(backfill=False)
    report = _Live(out, actor, int(time.time() * 1000), dlq_topic, reported or {})
    for batch, result in zip(plan, results, strict=True):
        out.records += len(batch.messages)
        metrics.RECORDS_IN.inc((batch.route.entry.id,), len(batch.messages))
        _route(batch, result, out, report)
    for labels, count in report.denied.items():
        metrics.DENIED.inc(labels, count)
    return out


def route_backfill(
    core: Router,
    kernels: Kernels,
    topic: str,
    messages: list[Any],
    grants: Container[str],
    actor: str,
    dlq_topic: str,
    state: KeyState | None = None,
    settled: int | None = None,
) -> Routed:
    """Deliveries of a backfill chunk (one source partition) to the grants it backfills.
    Rejected records went to the DLQ when the live stream read them, so here they are passed
    over; deliveries too large to write are the backfill's to report (:class:`_Backfill`).

    ``state``: the partition's per-key state, the live stream's: the backfill's grants hold
    keys there beside the live stream's, committed (changelog included) with the chunk's
    progress, so a backfill resumes after a crash without delivering anything again.
    ``settled``: the offset the state's committed rows routed up to: below it only each key's
    current version is given (no deleted rows, no superseded versions); above it, the
    partition's changes since, as they come."""
    out = Routed(backfill=True, records=len(messages))
    compiled = kernels.get(topic, core.routes[topic])
    partitions = {m.partition() for m in messages[:1]}
    starts = [dict.fromkeys(partitions, 0) if g.key in grants else {} for g in compiled.grants]
    states = {} if state is None else dict.fromkeys(partitions, state)
    below = {} if state is None or settled is None else dict.fromkeys(partitions, settled)
    batch = _Batch(kernels, core, topic, messages, starts, states, below)
    (result,) = run_kernels([batch])
    _route(batch, result, out, _Backfill(out, actor, int(time.time() * 1000), dlq_topic))
    return out


class _Backfill:
    """What a backfill does with records it does not deliver: rejections and row filters are
    the live stream's to report, but a delivery refused for its size is the grant's own (the
    live stream may never have routed the record to that grant): a dead letter and a
    ``delivery.refused`` happening."""

    def __init__(self, out: Routed, actor: str, now_ms: int, dlq_topic: str) -> None:
        self.out, self.actor, self.now_ms, self.dlq_topic = out, actor, now_ms, dlq_topic

    def rejected(self, record: SourceRecord, entry: str, rejection: Rejection) -> None:
        pass

    def filtered(self, entry: str, consumer: str, grant_id: str, count: int = 1) -> None:
        pass

    def refused(self, record: SourceRecord, entry: str, refusal: Refusal) -> None:
        message = (
            f"the delivery to grant {refusal.grant_id} ({refusal.topic}) would be "
            f"{refusal.size:,} bytes, over router.max_delivery_bytes ({refusal.limit:,}); the "
            "record's other grants got it, and this grant's consumer keeps the key's last "
            "version"
        )
        errors = [{"field": "(delivery)", "message": message}]
        self._set_aside(
            record,
            entry,
            "delivery_too_large",
            errors,
            None,
            {"grant_id": refusal.grant_id, "consumer": refusal.consumer},
        )
        details = {
            "reason": "delivery_too_large",
            "errors": errors,
            "position": record.position,
            "size": refusal.size,
            "limit": refusal.limit,
        }
        self._happened("delivery.refused", entry, details, refusal.consumer, refusal.grant_id)

    def _happened(
        self,
        kind: str,
        entry: str,
        details: Mapping[str, Any],
        consumer: str | None = None,
        grant_id: str | None = None,
    ) -> None:
        """An audit happening of this batch, sealed with its checkpoint."""
        self.out.happenings.append(
            Happening(kind, self.actor, self.now_ms, details, entry, consumer, grant_id)
        )

    def _set_aside(
        self,
        record: SourceRecord,
        entry: str,
        reason: str,
        errors: Sequence[Mapping[str, Any]],
        department: str | None,
        extra: Mapping[str, Any],
    ) -> None:
        """A dead letter for ``record``, counted by reason."""
        metrics.REJECTED.labels(entry or "(unknown)", reason).inc()
        letter = DeadLetter(
            origin="router",
            reason=reason,
            errors=errors,
            entry=entry,
            department=department,
            position=record.position,
            data=record.value,
            extra={"key_base64": _b64(record.key), **extra},
        )
        self.out.dead.append(
            OutRecord(self.dlq_topic, letter_key(record.key), letter.encode(), letter.headers())
        )


class _Live(_Backfill):
    """The live stream reports them: a dead letter and a happening per rejected record, row
    filters counted for the denial metric."""

    def __init__(
        self, out: Routed, actor: str, now_ms: int, dlq_topic: str, reported: Mapping[TP, int]
    ) -> None:
        super().__init__(out, actor, now_ms, dlq_topic)
        self.denied: Counter[tuple[str, str, str, str]] = Counter()
        self.reported = reported

    def rejected(self, record: SourceRecord, entry: str, rejection: Rejection) -> None:
        if record.offset < self.reported.get((record.topic, record.partition), 0):
            return  # set aside when it was first routed
        self._set_aside(record, entry, rejection.reason, rejection.errors, rejection.department, {})
        details = {
            "reason": rejection.reason,
            "errors": list(rejection.errors),
            "position": record.position,
            "department": rejection.department,
        }
        self._happened("record.rejected", entry, details)

    def filtered(self, entry: str, consumer: str, grant_id: str, count: int = 1) -> None:
        self.denied[entry, consumer, grant_id, "row_filter"] += count


def _left_over(report: _Backfill, entry: str, record: SourceRecord, outcome: Outcome) -> None:
    """A record the core routed: reported if it was rejected, filtered out or refused."""
    if outcome.rejection is not None:
        report.rejected(record, entry, outcome.rejection)
        return
    for grant_id, consumer in outcome.filtered:
        report.filtered(entry, consumer, grant_id)
    for refusal in outcome.refused:
        report.refused(record, entry, refusal)


def _route(batch: _Batch, result: KernelResult, out: Routed, report: _Backfill) -> None:
    """What the kernel routed of ``batch``, and the core the records it left."""
    entry = batch.route.entry.id
    missing, fallback, grant_outs, offsets, changes, changelog = result
    if missing:
        raise ExchangeError(
            f"schema ids {missing} of {batch.topic} were not resolved before routing "
            "(a bug: Kernels.fetch and compile run first)",
            code="UNRESOLVED_SCHEMA",
        )
    for partition, next_offset in offsets:
        tp = (batch.topic, partition)
        out.offsets[tp] = max(out.offsets.get(tp, 0), next_offset)
    left: list[tuple[SourceRecord, Outcome]] = []
    for i in fallback:
        record = source_record(batch.messages[i])
        outcome = _core(batch, record)
        if outcome.deliveries:
            # Valid after all (a value the kernel does not render): the core routes the
            # entry's whole batch, so deliveries keep the source order (and the kernel's
            # state changes are dropped: the core makes its own).
            _route_by_core(batch, out, report)
            return
        left.append((record, outcome))
    for record, outcome in left:
        _left_over(report, entry, record, outcome)
    _keep_changes(batch, out, changes, changelog)
    for grant, (deliveries, receipts, filtered) in zip(
        batch.compiled.grants, grant_outs, strict=True
    ):
        if filtered:
            terms = grant.plan.grant
            report.filtered(entry, terms.consumer, terms.id, filtered)
        if len(deliveries):
            out.streams.append(Stream(entry, batch.topic, grant, deliveries, receipts))


def _keep_changes(
    batch: _Batch, out: Routed, changes: list[tuple[int, Any]], changelog: Deliveries | None
) -> None:
    """The kernel's state changes pending from now on, and their changelog records routed."""
    for partition, made in changes:
        seq = made.end()
        if seq is not None:
            out.state_seqs.append((batch.states[partition], seq))
    if changelog is not None and len(changelog):
        out.changelog.append((batch.topic, changelog))


def _core(batch: _Batch, record: SourceRecord, state: StateBatch | None = None) -> Outcome:
    passed_over = batch.superseded if batch.settled else None
    return batch.core.route(record, batch.live(record), state, passed_over)


def _route_by_core(batch: _Batch, out: Routed, report: _Backfill) -> None:
    entry = batch.route.entry.id
    made = {p: s.begin() for p, s in batch.states.items()}
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    partitions: list[int] = []
    for m in batch.messages:
        record = source_record(m)
        state = made.get(record.partition)
        outcome = _core(batch, record, state)
        _left_over(report, entry, record, outcome)
        out.deliveries.extend((record, entry, d) for d in outcome.deliveries)
        if state is not None and outcome.changed is not None:
            keys.append(KeyState.digest(outcome.changed))
            values.append(state.row(outcome.changed))
            partitions.append(record.partition)
    for partition, state in made.items():
        seq = state.end()
        if seq is not None:
            out.state_seqs.append((batch.states[partition], seq))
    if keys:
        out.changelog.append((batch.topic, Deliveries.from_columns(keys, values, partitions, {})))


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
