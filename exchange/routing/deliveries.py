"""Delivery topics and schemas: what the router sets up when grants become active.

Grants are prepared together, because a worker may start with thousands of them: the missing
delivery topics are created in a few admin calls, and the registry is asked once per subject,
several subjects at a time. A subject whose schema is already registered (every restart) costs
one lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from exchange.catalog.avro import canonical_json
from exchange.catalog.published import PublishedCatalogEntry
from exchange.config import ExchangeSettings
from exchange.grants.model import GrantTerms
from exchange.kafka.admin import Admin, TopicChange, TopicSpec
from exchange.kafka.envelope import EnvelopeEncoder
from exchange.kafka.registry import Registry
from exchange.kafka.wire import value_subject
from exchange.routing.core import DELIVERY_FRAMING_BYTES, ActiveGrant
from exchange.routing.salts import GrantSalts
from exchange.routing.transform import DeliveryPlan, delivery_schema

#: Several grants of one consumer for one entry share the topic with different schemas; every
#: record names its writer schema, which readers fetch by id, so the subject does not constrain.
DELIVERY_COMPATIBILITY = "NONE"
#: Registry requests in flight at once while preparing grants.
REGISTRY_CONCURRENCY = 8


def delivery_topic(settings: ExchangeSettings, grant: GrantTerms) -> str:
    """The delivery topic of the grant's generation (``TopicSettings.delivery_of``)."""
    return settings.topics.delivery_of(grant.consumer, grant.entry, grant.id, grant.generation())


@dataclass(frozen=True)
class _Wanted:
    grant: GrantTerms
    published: PublishedCatalogEntry
    topic: str
    schema: dict[str, Any]
    schema_json: str


def delivery_topic_spec(
    settings: ExchangeSettings, topic: str, published: PublishedCatalogEntry
) -> TopicSpec:
    entry = published.entry
    # Compacted by key so a consumer can rebuild the current table; retention as the source's.
    config = {**entry.retention.topic_config()}
    if "compact" not in config["cleanup.policy"]:
        config["cleanup.policy"] = "compact"
    # Takes every delivery the router writes (router.max_delivery_bytes, larger ones go to the
    # DLQ): a delivery the broker refused would fail the checkpoint it is in.
    config["max.message.bytes"] = str(settings.router.max_delivery_bytes + DELIVERY_FRAMING_BYTES)
    return TopicSpec(topic, entry.partitions, settings.topics.replication_factor, config)


def prepare_deliveries(
    settings: ExchangeSettings,
    admin: Admin,
    registry: Registry,
    grants: Sequence[tuple[GrantTerms, PublishedCatalogEntry]],
    salts: GrantSalts,
) -> dict[str, ActiveGrant]:
    """Creates the consumers' compacted delivery topics and registers the grants' schemas.

    Returns the prepared grants by id. Grants with the same delivery schema share one encoder,
    and encoders of records that differ only in name and docs share one parsed record schema.
    """
    if not grants:
        return {}
    wanted = []
    for grant, published in grants:
        topic = delivery_topic(settings, grant)
        schema = delivery_schema(published.entry, published.record_schema, grant)
        wanted.append(_Wanted(grant, published, topic, schema, canonical_json(schema)))
    partitions = _create_topics(settings, admin, wanted)
    ids = _register(registry, wanted)
    encoders: dict[str, EnvelopeEncoder] = {}
    shapes: dict[str, Any] = {}
    out = {}
    for w in wanted:
        encoder = encoders.get(w.schema_json)
        if encoder is None:
            encoder = encoders[w.schema_json] = EnvelopeEncoder(
                ids[value_subject(w.topic), w.schema_json], w.schema, shapes
            )
        out[w.grant.id] = ActiveGrant(
            DeliveryPlan.build(w.grant, w.published.entry, salts.salt(w.grant.id)),
            w.topic,
            encoder,
            partitions.get(w.topic, 0),
        )
    return out


def _create_topics(
    settings: ExchangeSettings, admin: Admin, wanted: Iterable[_Wanted]
) -> dict[str, int]:
    """Creates the delivery topics not there yet; every wanted topic's partition count."""
    existing = admin.partition_counts()
    specs = {
        w.topic: delivery_topic_spec(settings, w.topic, w.published)
        for w in wanted
        if w.topic not in existing
    }
    # Admin.apply splits the creation into calls the broker accepts.
    admin.apply(
        [TopicChange(t, "create", ("new topic",), spec=s) for t, s in specs.items()], exist_ok=True
    )
    counts = {w.topic: existing.get(w.topic, 0) for w in wanted}
    counts.update({t: spec.partitions for t, spec in specs.items()})
    return counts


def _register(registry: Registry, wanted: Iterable[_Wanted]) -> dict[tuple[str, str], int]:
    """Schema ids by ``(subject, schema)``: subjects in parallel, each subject's schemas in turn."""
    by_subject: dict[str, list[str]] = {}
    for w in wanted:
        schemas = by_subject.setdefault(value_subject(w.topic), [])
        if w.schema_json not in schemas:
            schemas.append(w.schema_json)
    with ThreadPoolExecutor(REGISTRY_CONCURRENCY, thread_name_prefix="prepare-grants") as pool:
        found = pool.map(lambda item: _register_subject(registry, *item), by_subject.items())
        return {k: v for ids in found for k, v in ids.items()}


def _register_subject(
    registry: Registry, subject: str, schemas: list[str]
) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for schema_json in schemas:
        schema_id = registry.lookup(subject, schema_json)
        if schema_id is None:
            latest = registry.latest(subject)
            if latest is not None and registry.compatibility(subject) != DELIVERY_COMPATIBILITY:
                registry.set_compatibility(subject, DELIVERY_COMPATIBILITY)
            schema_id = registry.register(subject, schema_json)
            if latest is None:
                # The registry knows a subject's settings only once it has a version.
                registry.set_compatibility(subject, DELIVERY_COMPATIBILITY)
        out[subject, schema_json] = schema_id
    return out
