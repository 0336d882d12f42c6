"""Reading the audit trail back: for ``audit verify``, ``audit query`` and ``audit tail``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from exchange.audit.events import AuditEvent
from exchange.audit.receipts import RECEIPT, ReceiptRow, receipt_rows
from exchange.audit.verify import Read
from exchange.audit.writer import decode_event
from exchange.config import ExchangeSettings
from exchange.kafka.control import Message, read_all
from exchange.kafka.errors import RegistryError
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup, WireFormatError


def read_trail(settings: ExchangeSettings, topic: str | None = None) -> list[Read]:
    """Every committed record of the audit topic, decoded where possible, in topic order."""
    lookup = SchemaLookup(Registry(settings.registry).schema_by_id)
    return [
        to_read(lookup, m)
        for m in read_all(settings.kafka, topic or settings.topics.audit, committed=True)
    ]


def to_read(lookup: SchemaLookup, msg: Message) -> Read:
    position = f"partition {msg.partition} offset {msg.offset}"
    try:
        return Read(position, decode_event(lookup, msg.value), appended_ms=msg.appended_ms)
    except (WireFormatError, RegistryError) as exc:
        return Read(position, None, str(exc), msg.appended_ms)


@dataclass(frozen=True)
class Query:
    consumer: str | None = None
    entry: str | None = None
    grant_id: str | None = None
    kind: str | None = None
    since: dt.datetime | None = None

    def matches(self, event: AuditEvent) -> bool:
        if not (
            (self.consumer is None or event.consumer == self.consumer)
            and (self.kind is None or event.kind.startswith(self.kind))
            and (self.since is None or event.ts_ms >= int(self.since.timestamp() * 1000))
        ):
            return False
        if event.kind == RECEIPT:
            # A receipt covers several grants and entries when its own fields are empty.
            return any(self.matches_row(r) for r in receipt_rows(event))
        return self._about(event.entry, event.grant_id)

    def matches_row(self, row: ReceiptRow) -> bool:
        return self._about(row.entry, row.grant_id)

    def _about(self, entry: str | None, grant_id: str | None) -> bool:
        return (self.entry is None or entry == self.entry) and (
            self.grant_id is None or grant_id == self.grant_id
        )


def query(reads: Iterable[Read], q: Query) -> list[AuditEvent]:
    events = [r.event for r in reads if r.event is not None and q.matches(r.event)]
    return sorted(events, key=lambda e: (e.ts_ms, e.chain_id, e.sequence))
