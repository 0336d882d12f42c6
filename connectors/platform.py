"""What a connector needs from the platform: the published catalog entry, its registered schema,
and the saved source position. A connector trusts the platform's catalog (``exchange.catalog``
and the registry), not local files: it writes exactly the schema the platform registered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from connectors.config import ConnectorConfig
from connectors.errors import ConnectorError
from exchange.catalog.model import CatalogEntry
from exchange.catalog.published import parse_catalog_record
from exchange.config import ExchangeSettings
from exchange.kafka.control import read_table
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec


@dataclass(frozen=True)
class PublishedEntry:
    entry: CatalogEntry
    topic: str
    subject: str
    codec: AvroCodec
    #: The registered envelope schema ``codec`` writes.
    schema: dict[str, Any]

    @property
    def record_schema(self) -> dict[str, Any]:
        """The entry's own record: the non-null branch of the envelope's ``after``."""
        after = next(f for f in self.schema["fields"] if f["name"] == "after")
        return next(t for t in after["type"] if isinstance(t, dict))


def published_entry(settings: ExchangeSettings, config: ConnectorConfig) -> PublishedEntry:
    """The connector's entry as the platform published it; refuses another department's entry."""
    table = read_table(settings.kafka, settings.topics.catalog)
    raw = table.get(config.entry)
    if raw is None:
        known = ", ".join(sorted(table)) or "none"
        raise ConnectorError(
            f"{config.where('entry')}: entry {config.entry!r} is not in the platform catalog "
            f"({settings.topics.catalog}; "
            f"published entries: {known}). Is the name right, and was `exchange catalog apply` "
            "run?",
            code="UNKNOWN_ENTRY",
        )
    try:
        published = parse_catalog_record(raw)
    except ValueError as exc:
        raise ConnectorError(
            f"catalog record of {config.entry!r} on {settings.topics.catalog} is unreadable: "
            f"{exc.__cause__ or exc}",
            code="BAD_CATALOG_RECORD",
        ) from exc
    entry, topic, subject = published.entry, published.source_topic, published.subject
    if entry.provider != config.department:
        raise ConnectorError(
            f"{config.where('entry')}: refused: connector {config.id!r} belongs to department "
            f"{config.department!r} (setting department), but "
            f"entry {entry.id!r} is provided by {entry.provider!r}; a department may publish only "
            "the entries it provides",
            code="NOT_PROVIDER",
        )
    latest = Registry(settings.registry).latest(subject)
    if latest is None:
        raise ConnectorError(
            f"no schema registered under {subject}: run `exchange catalog apply`",
            code="NOT_REGISTERED",
        )
    return PublishedEntry(
        entry, topic, subject, AvroCodec(latest.schema_id, latest.schema), latest.schema
    )


def saved_position(settings: ExchangeSettings, config: ConnectorConfig) -> dict[str, Any] | None:
    """The connector's last saved source position, from its department's offsets topic.

    A record that does not name this connector, its department and its entry is refused, never
    resumed from: a connector resuming from a forged position would silently skip (or repeat)
    what its source holds."""
    topic = settings.topics.connector_offsets_of(config.department)
    # Committed only: a position of an aborted transaction (a crash) was never reached.
    raw = read_table(settings.kafka, topic, committed=True).get(config.id)
    return None if raw is None else position_from(raw, config, topic)


def position_from(raw: bytes, config: ConnectorConfig, topic: str) -> dict[str, Any]:
    """The position in a saved record, if it is this connector's own (see above)."""
    where = f"saved position of connector {config.id!r} on {topic}"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConnectorError(f"{where} is not JSON: {exc}", code="BAD_OFFSET_RECORD") from exc
    if not isinstance(value, dict) or not isinstance(value.get("position"), dict):
        raise ConnectorError(f"{where} has no 'position' object", code="BAD_OFFSET_RECORD")
    expected = {"connector": config.id, "department": config.department, "entry": config.entry}
    wrong = {k: value.get(k) for k, v in expected.items() if value.get(k) != v}
    if wrong:
        found = ", ".join(f"{k} {v!r} (expected {expected[k]!r})" for k, v in wrong.items())
        raise ConnectorError(
            f"refused: {where} names {found}; it was not written by this connector, so it is "
            "not resumed from. Check who wrote it (`exchange connector positions`), then delete "
            "it (a tombstone for the key) to start from the source's beginning, or write the "
            "right position",
            code="FORGED_POSITION",
        )
    return dict(value["position"])
