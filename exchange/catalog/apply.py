"""``exchange catalog apply``: make the platform match the catalog.

Plan first, then change: every subject's compatibility is checked before anything is created, so
a refused schema change leaves the platform as it was. Applying twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchange.catalog.avro import backward_incompatibilities, canonical_json, envelope_schema
from exchange.catalog.load import Catalog, LoadedEntry
from exchange.config import ExchangeSettings
from exchange.config.settings import TopicSettings
from exchange.errors import ExchangeError
from exchange.kafka.admin import Admin, TopicSpec, plan_topics
from exchange.kafka.control import publish, read_table
from exchange.kafka.registry import Registry
from exchange.kafka.wire import value_subject

COMPATIBILITY = "BACKWARD"
#: Bumped when the layout of records on the catalog topic changes.
CATALOG_RECORD_VERSION = 1


@dataclass(frozen=True)
class Change:
    kind: str  # "topic" | "subject" | "catalog"
    name: str
    action: str  # "create" | "update" | "delete" | "unchanged"
    detail: str = ""


class IncompatibleSchemaError(ExchangeError):
    """A schema change would break readers of records already published."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"refused: schema change(s) not {COMPATIBILITY} compatible, "
            f"nothing was changed:\n{lines}",
            code="INCOMPATIBLE_SCHEMA",
        )


def source_topic(topics: TopicSettings, entry_id: str) -> str:
    return topics.source_prefix + entry_id


def control_topic_specs(topics: TopicSettings) -> list[TopicSpec]:
    rf = topics.replication_factor
    compact = {"cleanup.policy": "compact"}
    forever = {"cleanup.policy": "delete", "retention.ms": "-1"}
    dlq_ms = str(topics.dlq_retention_days * 86_400_000)
    return [
        TopicSpec(topics.catalog, 1, rf, compact),
        TopicSpec(topics.grants, 1, rf, compact),
        TopicSpec(topics.audit_keys, 1, rf, compact),
        TopicSpec(topics.router_backfills, 1, rf, compact),
        *(
            TopicSpec(t, 1, rf, compact)
            for t in (
                topics.portal_accounts,
                topics.portal_tokens,
                topics.portal_sessions,
                topics.portal_lockouts,
                topics.portal_demands,
                topics.portal_notices,
                topics.portal_webhooks,
                topics.objections,
                topics.quality_measures,
            )
        ),
        # Scores' history: what an assessment of any past period is computed from.
        TopicSpec(topics.quality_scores, 1, rf, forever),
        # The audit trail is never deleted by retention; its chains are keyed by writer. The
        # broker stamps each record with its own time: signing keys' validity is judged by it,
        # not by a time the writer chose (which could backdate a forgery).
        TopicSpec(topics.audit, 3, rf, {**forever, "message.timestamp.type": "LogAppendTime"}),
        TopicSpec(topics.dlq, 3, rf, {"cleanup.policy": "delete", "retention.ms": dlq_ms}),
    ]


def source_topic_specs(catalog: Catalog, topics: TopicSettings) -> list[TopicSpec]:
    return [
        TopicSpec(
            source_topic(topics, e.entry.id),
            e.entry.partitions,
            topics.replication_factor,
            e.entry.retention.topic_config(),
        )
        for e in catalog.entries.values()
    ] + [
        TopicSpec(
            topics.connector_offsets_of(department),
            1,
            topics.replication_factor,
            {"cleanup.policy": "compact"},
        )
        for department in sorted({e.entry.provider for e in catalog.entries.values()})
    ]


def entry_envelope(catalog: Catalog, loaded: LoadedEntry) -> dict[str, Any]:
    assert catalog.envelope is not None and loaded.schema is not None, "catalog not validated"
    return envelope_schema(loaded.entry.id, loaded.schema, catalog.envelope)


def catalog_record(loaded: LoadedEntry, topics: TopicSettings) -> dict[str, Any]:
    """What ``exchange.catalog`` holds for one entry: the entry, its topic, subject and schema."""
    topic = source_topic(topics, loaded.entry.id)
    return {
        "version": CATALOG_RECORD_VERSION,
        "entry": loaded.entry.model_dump(mode="json", by_alias=True),
        "record_schema": loaded.schema,
        "source_topic": topic,
        "subject": value_subject(topic),
    }


def encode_record(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8")


def apply_catalog(
    catalog: Catalog,
    settings: ExchangeSettings,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[Change]:
    topics = settings.topics
    admin = Admin(settings.kafka)
    registry = Registry(settings.registry)
    changes: list[Change] = []

    progress("checking schemas against the registry")
    to_register: list[tuple[str, str]] = []
    refused: list[str] = []
    for loaded in catalog.entries.values():
        subject = value_subject(source_topic(topics, loaded.entry.id))
        new = entry_envelope(catalog, loaded)
        latest = registry.latest(subject)
        if latest is not None and latest.schema == new:
            changes.append(Change("subject", subject, "unchanged", f"version {latest.version}"))
            continue
        if latest is not None:
            problems = _incompatibilities(new, latest.schema)
            if not problems and not registry.is_compatible(subject, canonical_json(new)):
                problems = ["the registry reports the change incompatible"]
            if problems:
                refused.extend(f"{loaded.entry.id} ({subject}): {p}" for p in problems)
                continue
        action = "create" if latest is None else "update"
        detail = "new subject" if latest is None else f"new version after {latest.version}"
        changes.append(Change("subject", subject, action, detail))
        to_register.append((subject, canonical_json(new)))
    if refused:
        raise IncompatibleSchemaError(refused)

    progress("planning topics")
    wanted = control_topic_specs(topics) + source_topic_specs(catalog, topics)
    topic_plan = plan_topics(wanted, admin.topic_states(t.name for t in wanted))
    changes.extend(Change("topic", c.topic, c.action, "; ".join(c.details)) for c in topic_plan)

    progress("comparing the published catalog")
    published = read_table(settings.kafka, topics.catalog)
    records = {
        e.entry.id: encode_record(catalog_record(e, topics)) for e in catalog.entries.values()
    }
    writes: list[tuple[str, bytes | None]] = []
    for entry_id, value in records.items():
        if entry_id not in published:
            writes.append((entry_id, value))
            changes.append(Change("catalog", entry_id, "create"))
        elif published[entry_id] != value:
            writes.append((entry_id, value))
            changes.append(Change("catalog", entry_id, "update"))
        else:
            changes.append(Change("catalog", entry_id, "unchanged"))
    for entry_id in sorted(set(published) - set(records)):
        # Withdrawn from the catalog: its record goes; its topic and data stay for the operator.
        writes.append((entry_id, None))
        changes.append(Change("catalog", entry_id, "delete", "removed from the catalog"))

    if dry_run:
        return changes

    progress("creating and updating topics")
    admin.apply(topic_plan)
    progress("registering schemas")
    for subject, schema_json in to_register:
        registry.register(subject, schema_json)
    for loaded in catalog.entries.values():
        subject = value_subject(source_topic(topics, loaded.entry.id))
        if registry.compatibility(subject) != COMPATIBILITY:
            registry.set_compatibility(subject, COMPATIBILITY)
    progress("publishing the catalog")
    if writes:
        publish(settings.kafka, topics.catalog, writes)
    return changes


def _incompatibilities(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Field-level reasons, looking inside ``after`` where the entry's own record lives."""
    return [f"after.{p}" for p in backward_incompatibilities(_after(new), _after(old))]


def _after(envelope: dict[str, Any]) -> dict[str, Any]:
    for field in envelope.get("fields", []):
        if field["name"] == "after":
            return next(t for t in field["type"] if isinstance(t, dict))
    return envelope
