"""What each consumer has received, and whether the router has caught up (operators, demo).

Reads whole topics (source and delivery tables), so it is meant for the sample exchange and for
spot checks, not for very large entries; ``exchange status`` (metrics) is the live view.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from exchange.catalog.apply import source_topic
from exchange.catalog.load import Catalog
from exchange.config import ExchangeSettings
from exchange.grants.model import Grant
from exchange.grants.rules import effective_masks
from exchange.grants.store import read_grants
from exchange.kafka.admin import Admin
from exchange.kafka.control import read_all, records_behind
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup, WireFormatError
from exchange.routing.core import GRANT_HEADER, grant_key
from exchange.routing.deliveries import delivery_topic
from exchange.routing.worker import read_progress


@dataclass
class GrantReport:
    grant: Grant
    topic: str
    #: Rows in the consumer's current table (the delivery topic replayed by key).
    rows: int
    #: Rows in the entry's current table at its source.
    source_rows: int
    visible: list[str]
    masked: dict[str, str]
    row_filter: str
    sample: dict[str, Any] | None = None
    undecodable: list[str] = field(default_factory=list)

    @property
    def filtered_out(self) -> int:
        return max(0, self.source_rows - self.rows)


def _table(
    settings: ExchangeSettings, topic: str, lookup: SchemaLookup, grant_id: str | None = None
) -> tuple[dict[bytes, Any], list[str]]:
    """The current row per key: creates and updates set it, deletes and tombstones remove it.

    With ``grant_id``, only what was delivered under that grant (a consumer with two grants
    on one entry receives both on one delivery topic).
    """
    current: dict[bytes, Any] = {}
    bad: list[str] = []
    # Committed only, as a consumer reads (an aborted transaction's records never count).
    for msg in read_all(settings.kafka, topic, committed=True):
        key = msg.key or b""
        if msg.value is None:
            # Only a tombstone names its grant in a header (a delivery's value says it).
            tombstone_grant = dict(msg.headers).get(GRANT_HEADER)
            if grant_id is None or tombstone_grant == grant_id.encode():
                current.pop(key, None)
            continue
        try:
            change = lookup.decode(msg.value)
        except WireFormatError as exc:
            bad.append(f"{topic}/{msg.partition}/{msg.offset}: {exc}")
            continue
        if grant_id is not None and change.get("grant_id") != grant_id:
            continue
        if change.get("op") == "d" or change.get("after") is None:
            current.pop(key, None)
        else:
            current[key] = change["after"]
    return current, bad


def delivery_report(settings: ExchangeSettings, catalog: Catalog) -> list[GrantReport]:
    now = dt.datetime.now(dt.UTC)
    lookup = SchemaLookup(Registry(settings.registry).schema_by_id)
    sources: dict[str, dict[bytes, Any]] = {}
    reports = []
    for grant in sorted(read_grants(settings).grants.values(), key=lambda g: g.id):
        loaded = catalog.entries.get(grant.request.entry)
        if not grant.is_active(now) or loaded is None:
            continue
        entry = loaded.entry
        if entry.id not in sources:
            sources[entry.id] = _table(settings, source_topic(settings.topics, entry.id), lookup)[0]
        topic = delivery_topic(settings, grant.terms())
        rows, bad = _table(settings, topic, lookup, grant.id)
        masks = effective_masks(grant.request, entry)
        reports.append(
            GrantReport(
                grant=grant,
                topic=topic,
                rows=len(rows),
                source_rows=len(sources[entry.id]),
                visible=[f for f in grant.request.fields if f not in masks],
                masked={f: m.describe() for f, m in masks.items()},
                row_filter=" and ".join(
                    f"{p.field} {p.op} {'|'.join(str(v) for v in p.values)}"
                    for p in grant.request.row_filter
                ),
                sample=next(iter(rows.values()), None),
                undecodable=bad,
            )
        )
    return reports


@dataclass(frozen=True)
class Readable:
    """One delivery topic of a consumer, read from offset 0 as the consumer could."""

    topic: str
    #: The current row per delivered key (the topic replayed: deletes and tombstones remove).
    rows: dict[bytes, Any]
    undecodable: list[str]


def readable(settings: ExchangeSettings, consumer: str, entry_id: str) -> list[Readable]:
    """Every delivery topic there is for ``consumer`` on the entry, each replayed from offset 0:
    what a hostile reader with the consumer's rights could get of it now, whatever the SDK
    would show. An ended or changed grant generation's topic is deleted (``routing/reaper.py``),
    so only current generations should be here."""
    prefix = settings.topics.deliveries_of(consumer, entry_id)
    topics = sorted(t for t in Admin(settings.kafka).partition_counts() if t.startswith(prefix))
    lookup = SchemaLookup(Registry(settings.registry).schema_by_id)
    return [Readable(t, *_table(settings, t, lookup)) for t in topics]


@dataclass(frozen=True)
class Backlog:
    #: Source records the router's group has not committed yet.
    unrouted: int
    #: (grant, source partition) pairs not yet handed over from backfill to the live stream.
    backfilling: int


def router_backlog(settings: ExchangeSettings, catalog: Catalog) -> Backlog:
    now = dt.datetime.now(dt.UTC)
    admin = Admin(settings.kafka)
    counts = admin.partition_counts()
    numbers = {e: range(counts.get(source_topic(settings.topics, e), 0)) for e in catalog.entries}
    tps = [(source_topic(settings.topics, e), p) for e, ps in numbers.items() for p in ps]
    ends, starts = admin.end_offsets(tps), admin.start_offsets(tps)
    committed = admin.committed_offsets(settings.router.group_id)
    unrouted = sum(records_behind(settings.kafka, tps, ends, starts, committed).values())
    done = {(p.grant_id, p.topic, p.partition) for p in read_progress(settings) if p.done}
    backfilling = sum(
        1
        for grant in read_grants(settings).grants.values()
        if grant.is_active(now) and grant.request.entry in numbers
        for p in numbers[grant.request.entry]
        if (grant_key(grant.terms()), source_topic(settings.topics, grant.request.entry), p)
        not in done
    )
    return Backlog(unrouted, backfilling)
