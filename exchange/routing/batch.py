"""Routing a batch of source records: what to write for it, before anything is written.

:func:`route_live` and :func:`route_backfill` run the pure core over a batch and return a
:class:`Routed`: the deliveries, dead letters and audit happenings the batch produces, and (live)
the source offsets it covers. Nothing is written here; the checkpointer stages a ``Routed`` into
its open transaction. Keeping the two apart lets the worker route the next batch while the
previous checkpoint commits, and lets a batch routed before a failed checkpoint be dropped whole.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

from exchange.audit.events import Happening
from exchange.audit.writer import OutRecord
from exchange.dlq import DeadLetter
from exchange.routing import metrics
from exchange.routing.backfill import Handover, Progress
from exchange.routing.core import Delivery, Rejection, Router, SourceRecord

__all__ = ["Routed", "route_backfill", "route_live"]

TP = tuple[str, int]


@dataclass
class Routed:
    """What one batch (live) or chunk (backfill) asks to be written."""

    backfill: bool
    #: ``(record, entry, delivery)`` in the order they are produced.
    deliveries: list[tuple[SourceRecord, str, Delivery]] = field(default_factory=list)
    dead: list[OutRecord] = field(default_factory=list)
    happenings: list[Happening] = field(default_factory=list)
    #: Live: the next offset per source partition once this batch is committed.
    offsets: dict[TP, int] = field(default_factory=dict)
    #: Backfill: its progress once this chunk is committed.
    progress: list[Progress] = field(default_factory=list)
    records: int = 0


def route_live(
    core: Router,
    handover: Handover,
    records: Sequence[SourceRecord],
    actor: str,
    dlq_topic: str,
) -> Routed:
    """Validate and route a live batch: grants handed over to the live stream get deliveries,
    rejected records a dead letter and a ``record.rejected`` happening."""
    out = Routed(backfill=False, records=len(records))
    now_ms = int(time.time() * 1000)
    records_in: Counter[str] = Counter()
    denied: Counter[tuple[str, str, str, str]] = Counter()
    for record in records:
        out.offsets[record.topic, record.partition] = record.offset + 1
        route = core.routes.get(record.topic)
        live: Container[str] | None = None
        if route is not None and route.grants:
            live = handover.live(record.topic, record.partition, record.offset, route.grants)
        outcome = core.route(record, live)
        entry = outcome.entry or "(unknown)"
        records_in[entry] += 1
        if outcome.rejection is not None:
            _reject(out, record, outcome.entry, outcome.rejection, actor, now_ms, dlq_topic)
            continue
        for grant_id, consumer in outcome.filtered:
            denied[entry, consumer, grant_id, "row_filter"] += 1
        out.deliveries.extend((record, entry, d) for d in outcome.deliveries)
    for entry, count in records_in.items():
        metrics.RECORDS_IN.inc((entry,), count)
    for labels, count in denied.items():
        metrics.DENIED.inc(labels, count)
    return out


def route_backfill(core: Router, records: Iterable[SourceRecord], grants: Container[str]) -> Routed:
    """Deliveries of a backfill chunk to the grants it backfills. Rejected records went to the
    DLQ when the live stream read them, so here they are passed over."""
    out = Routed(backfill=True)
    for record in records:
        out.records += 1
        outcome = core.route(record, grants)
        if outcome.rejection is None and outcome.entry is not None:
            entry = outcome.entry
            out.deliveries.extend((record, entry, d) for d in outcome.deliveries)
    return out


def _reject(
    out: Routed,
    record: SourceRecord,
    entry: str | None,
    rejected: Rejection,
    actor: str,
    now_ms: int,
    dlq_topic: str,
) -> None:
    metrics.REJECTED.labels(entry or "(unknown)", rejected.reason).inc()
    letter = DeadLetter(
        origin="router",
        reason=rejected.reason,
        errors=rejected.errors,
        entry=entry,
        department=rejected.department,
        position=record.position,
        data=record.value,
        extra={"key_base64": _b64(record.key)},
    )
    out.dead.append(OutRecord(dlq_topic, record.key, letter.encode(), letter.headers()))
    out.happenings.append(
        Happening(
            kind="record.rejected",
            actor=actor,
            ts_ms=now_ms,
            entry=entry,
            details={
                "reason": rejected.reason,
                "errors": list(rejected.errors),
                "position": record.position,
                "department": rejected.department,
            },
        )
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
