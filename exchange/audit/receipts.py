"""Delivery receipts: what the router delivered, under which grant, sealed on the audit trail.

A receipt row says what one batch delivered under one grant from one source partition: the
source offsets, the count and a SHA-256 over the delivered records. A router writes one
``delivery.receipt`` event per consumer per batch holding that consumer's rows (at most
:data:`MAX_ROWS` per event), so the number of audit events per batch is bounded by the number of
consumers, not grants: with thousands of grants a batch touches thousands of rows, and sealing
each as an event of its own cost more than routing. The event's ``entry`` and ``grant_id`` are
set when all its rows share them.

Events written before rows existed hold a single row in their details; :func:`receipt_rows`
reads both forms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exchange.audit.events import AuditEvent, Happening

RECEIPT = "delivery.receipt"
#: Rows per event: keeps an event well under Kafka's default 1 MB record limit (~200 B a row).
MAX_ROWS = 500


@dataclass(frozen=True)
class ReceiptRow:
    grant_id: str
    consumer: str
    entry: str
    source_topic: str
    partition: int
    first_offset: int
    last_offset: int
    count: int
    delivery_topic: str | None
    sha256: str

    def details(self) -> dict[str, Any]:
        # By hand rather than asdict (which deep-copies): a batch may hold thousands of rows.
        # The consumer is the event's.
        return {
            "grant_id": self.grant_id,
            "entry": self.entry,
            "source_topic": self.source_topic,
            "partition": self.partition,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "count": self.count,
            "delivery_topic": self.delivery_topic,
            "sha256": self.sha256,
        }


def receipt_happenings(
    rows: Iterable[ReceiptRow], actor: str, ts_ms: int, backfill: bool
) -> list[Happening]:
    """One event per consumer (and per :data:`MAX_ROWS` of its rows)."""
    by_consumer: dict[str, list[ReceiptRow]] = {}
    for row in rows:
        by_consumer.setdefault(row.consumer, []).append(row)
    out = []
    for consumer, mine in sorted(by_consumer.items()):
        for start in range(0, len(mine), MAX_ROWS):
            chunk = mine[start : start + MAX_ROWS]
            entries = {r.entry for r in chunk}
            grants = {r.grant_id for r in chunk}
            out.append(
                Happening(
                    kind=RECEIPT,
                    actor=actor,
                    ts_ms=ts_ms,
                    consumer=consumer,
                    entry=entries.pop() if len(entries) == 1 else None,
                    grant_id=grants.pop() if len(grants) == 1 else None,
                    details={"receipts": [r.details() for r in chunk], "backfill": backfill},
                )
            )
    return out


def receipt_rows(event: AuditEvent) -> list[ReceiptRow]:
    """The rows of a ``delivery.receipt`` event, of either form; ``[]`` for other kinds."""
    if event.kind != RECEIPT:
        return []
    details = event.detail()
    rows = details.get("receipts")
    if isinstance(rows, list):
        return [_row(event, r) for r in rows if isinstance(r, Mapping)]
    # One row per event, its grant and entry on the event itself.
    return [_row(event, {**details, "grant_id": event.grant_id, "entry": event.entry})]


def _row(event: AuditEvent, r: Mapping[str, Any]) -> ReceiptRow:
    return ReceiptRow(
        grant_id=str(r.get("grant_id") or ""),
        consumer=event.consumer or "",
        entry=str(r.get("entry") or ""),
        source_topic=str(r.get("source_topic") or ""),
        partition=int(r.get("partition") or 0),
        first_offset=int(r.get("first_offset") or 0),
        last_offset=int(r.get("last_offset") or 0),
        count=int(r.get("count") or 0),
        delivery_topic=r.get("delivery_topic"),
        sha256=str(r.get("sha256") or ""),
    )
