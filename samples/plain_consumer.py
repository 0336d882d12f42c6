"""A department's delivery topic read with plain confluent-kafka, no Exchange code at all.

Shown in docs/consuming.md and run by the integration tests. Every delivery is a Confluent-framed
Avro record whose schema the registry holds under ``<topic>-value``; its fields carry the grant
id, the event id and the source position (only tombstones carry them as headers). The router
writes in Kafka transactions and this consumer reads committed records only (librdkafka's
default), so it sees every change once.

A topic or a pattern: each grant generation has a topic of its own
(``dlv.<dept>.<entry>.<grant>.r<revision>``), so a reader of every generation subscribes to
``^dlv\\.<dept>\\.<entry>\\..*`` (docs/consuming.md).

    pip install 'confluent-kafka[avro,schemaregistry]'
    python -m samples.plain_consumer '^dlv\\.mzj\\.gongan\\.resident_population\\..*' mzj.reports
"""

from __future__ import annotations

import sys
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def read_deliveries(
    topic: str,
    group_id: str,
    bootstrap: str = "localhost:9092",
    registry: str = "http://localhost:8081/apis/ccompat/v7",
    idle_s: float = 5.0,
) -> list[dict[str, Any]]:
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,  # the department's own prefix, e.g. "minzheng.reports"
            "auto.offset.reset": "earliest",  # a new group reads the whole current table
            "enable.auto.commit": False,
            # A pattern (^dlv\.<dept>\.<entry>\..*) finds a grant's new generations this fast.
            "topic.metadata.refresh.interval.ms": 5000,
        }
    )
    consumer.subscribe([topic])
    changes: list[dict[str, Any]] = []
    try:
        while True:
            msg = consumer.poll(idle_s)
            if msg is None:
                return changes
            if msg.error():
                raise RuntimeError(msg.error())
            if msg.value() is None:
                continue  # a tombstone after a delete ("op": "d"), kept for compaction
            context = SerializationContext(msg.topic() or topic, MessageField.VALUE)
            change = deserialize(msg.value(), context)
            key = msg.key()
            change["key"] = key.decode() if isinstance(key, bytes) else None
            changes.append(change)  # handle it, then commit
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()


if __name__ == "__main__":
    for change in read_deliveries(sys.argv[1], group_id=sys.argv[2] if len(sys.argv) > 2 else ""):
        print(change["op"], change["key"], change["after"])
