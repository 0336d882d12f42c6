"""Delivery topics and schemas: what the router sets up when a grant becomes active."""

from __future__ import annotations

from exchange.catalog.apply import value_subject
from exchange.catalog.avro import canonical_json
from exchange.catalog.published import PublishedCatalogEntry
from exchange.config import ExchangeSettings
from exchange.grants.model import Grant
from exchange.kafka.admin import Admin, TopicSpec, plan_topics
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from exchange.routing.core import ActiveGrant
from exchange.routing.transform import DeliveryPlan, delivery_schema

#: Several grants of one consumer for one entry share the topic with different schemas; every
#: record names its writer schema, which readers fetch by id, so the subject does not constrain.
DELIVERY_COMPATIBILITY = "NONE"


def delivery_topic(settings: ExchangeSettings, consumer: str, entry_id: str) -> str:
    return f"{settings.topics.delivery_prefix}{consumer}.{entry_id}"


def prepare_delivery(
    settings: ExchangeSettings,
    admin: Admin,
    registry: Registry,
    grant: Grant,
    published: PublishedCatalogEntry,
) -> ActiveGrant:
    """Creates the consumer's compacted delivery topic and registers the grant's schema."""
    entry = published.entry
    topic = delivery_topic(settings, grant.request.consumer, entry.id)
    # Compacted by key so a consumer can rebuild the current table; retention as the source's.
    config = {**entry.retention.topic_config()}
    if "compact" not in config["cleanup.policy"]:
        config["cleanup.policy"] = "compact"
    spec = TopicSpec(topic, entry.partitions, settings.topics.replication_factor, config)
    plan = [c for c in plan_topics([spec], admin.topic_states([topic])) if c.action == "create"]
    admin.apply(plan)
    schema = delivery_schema(entry, published.record_schema, grant)
    subject = value_subject(topic)
    latest = registry.latest(subject)
    if latest is not None and registry.compatibility(subject) != DELIVERY_COMPATIBILITY:
        registry.set_compatibility(subject, DELIVERY_COMPATIBILITY)
    schema_id = registry.register(subject, canonical_json(schema))
    if latest is None:
        # The registry knows a subject's settings only once it has a version.
        registry.set_compatibility(subject, DELIVERY_COMPATIBILITY)
    return ActiveGrant(DeliveryPlan.build(grant, entry), topic, AvroCodec(schema_id, schema))
