"""The catalog as the platform published it on ``exchange.catalog`` (what running processes use)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from exchange.catalog.model import CatalogEntry
from exchange.config import ExchangeSettings
from exchange.kafka.control import read_table


@dataclass(frozen=True)
class PublishedCatalogEntry:
    entry: CatalogEntry
    #: The entry's own record schema (``after`` of its change records) as compact JSON: read
    #: only when a grant of the entry is prepared, and as dicts a router's 1,000 entries held
    #: 5 MB (77,000 objects, tracemalloc 2026-12-06).
    record_schema_json: str
    source_topic: str
    subject: str

    @property
    def record_schema(self) -> dict[str, Any]:
        """The record schema, parsed (a new dict each time)."""
        schema: dict[str, Any] = json.loads(self.record_schema_json)
        return schema


@dataclass
class PublishedCatalog:
    entries: dict[str, PublishedCatalogEntry] = field(default_factory=dict)
    #: Catalog records that cannot be read: ``(entry id, why)``.
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def by_topic(self) -> dict[str, PublishedCatalogEntry]:
        return {e.source_topic: e for e in self.entries.values()}


def parse_catalog_record(raw: bytes) -> PublishedCatalogEntry:
    """One ``exchange.catalog`` value; ValueError (with the reason) when it is not one."""
    try:
        record = json.loads(raw)
        return PublishedCatalogEntry(
            entry=CatalogEntry.model_validate(record["entry"]),
            record_schema_json=json.dumps(
                dict(record["record_schema"]), separators=(",", ":"), ensure_ascii=False
            ),
            source_topic=str(record["source_topic"]),
            subject=str(record["subject"]),
        )
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"unreadable catalog record: {exc}") from exc


def read_published(settings: ExchangeSettings) -> PublishedCatalog:
    out = PublishedCatalog()
    for entry_id, raw in read_table(settings.kafka, settings.topics.catalog).items():
        try:
            out.entries[entry_id] = parse_catalog_record(raw)
        except ValueError as exc:
            out.unreadable.append((entry_id, str(exc)))
    return out
