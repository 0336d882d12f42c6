"""Control topics (``exchange.catalog``, ``exchange.grants``, ...): read whole, written acked."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from exchange.config.settings import KafkaSettings
from exchange.kafka.errors import KafkaOpError


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def read_table(settings: KafkaSettings, topic: str) -> dict[str, bytes]:
    """The latest value per key of a compacted topic, read from the start to the current end.

    Tombstones remove their key. No consumer group offsets are committed.
    """
    table: dict[str, bytes] = {}
    for msg in read_all(settings, topic):
        key = (msg.key or b"").decode("utf-8", errors="replace")
        if msg.value is None:
            table.pop(key, None)
        else:
            table[key] = msg.value
    return table


def read_all(settings: KafkaSettings, topic: str, *, committed: bool = False) -> list[Message]:
    """Every record of ``topic`` from the start to its end as of now, partition by partition.

    For control topics, tools and tests: it holds everything in memory. ``committed`` skips
    records of aborted or still open transactions (topics written transactionally: grants, audit).
    """
    consumer = reader(settings, committed=committed)
    try:
        return _read(consumer, topic, settings.request_timeout_s)
    finally:
        consumer.close()


def reader(settings: KafkaSettings, *, committed: bool = False) -> Consumer:
    """A consumer for reading by assignment: a throwaway group, nothing committed."""
    return Consumer(
        settings.client_config(
            **{
                "group.id": f"exchange-reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed" if committed else "read_uncommitted",
            }
        )
    )


def read_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int, timeout: float
) -> list[Message]:
    """Records of one partition with ``start <= offset < end`` (or to the partition's end)."""
    out: list[Message] = []
    if start >= end:
        return out
    consumer.assign([TopicPartition(topic, partition, start)])
    try:
        while True:
            msg = consumer.poll(timeout)
            if msg is None:
                raise KafkaOpError(f"timed out reading {topic}[{partition}]", code="_TIMED_OUT")
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaOpError.wrap(f"cannot read {topic}", KafkaException(err))
            offset = int(msg.offset() or 0)
            # Transaction markers take offsets too, so `end - 1` itself may never arrive.
            if offset >= end:
                return out
            out.append(to_message(msg))
            if offset + 1 >= end:
                return out
    finally:
        consumer.unassign()


def to_message(msg: Any) -> Message:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = tuple((str(k), _bytes(v)) for k, v in pairs)
    return Message(
        str(msg.topic()),
        int(msg.partition() or 0),
        int(msg.offset() or 0),
        msg.key(),
        msg.value(),
        headers,
    )


def _read(consumer: Consumer, topic: str, timeout: float) -> list[Message]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaOpError.wrap(f"cannot read metadata of {topic}", exc) from exc
    tmeta = metadata.topics.get(topic)
    if tmeta is None or tmeta.error is not None:
        return []
    pending = set()
    assignment = []
    ends = {}
    for p in tmeta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        if high > low:
            pending.add(p)
            ends[p] = high
            assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
    out: list[Message] = []
    if not assignment:
        return out
    consumer.assign(assignment)
    while pending:
        msg = consumer.poll(timeout)
        if msg is None:
            raise KafkaOpError(f"timed out reading {topic} to its end", code="_TIMED_OUT")
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                continue
            raise KafkaOpError.wrap(f"cannot read {topic}", KafkaException(err))
        partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
        if partition not in pending:
            continue
        if offset >= ends[partition]:
            pending.discard(partition)
            continue
        out.append(to_message(msg))
        if offset + 1 >= ends[partition]:
            pending.discard(partition)
    return out


def _bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else value


def publish(
    settings: KafkaSettings, topic: str, records: Iterable[tuple[str, bytes | None]]
) -> int:
    """Write keyed records (``None`` = tombstone) and wait until Kafka acknowledged all of them."""
    producer = Producer(
        settings.client_config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5})
    )
    failures: list[Any] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    count = 0
    for key, value in records:
        producer.produce(topic, key=key.encode("utf-8"), value=value, on_delivery=on_delivery)
        producer.poll(0)
        count += 1
    remaining = producer.flush(settings.request_timeout_s)
    if remaining:
        raise KafkaOpError(
            f"{remaining} record(s) to {topic} not acknowledged in time", code="_TIMED_OUT"
        )
    if failures:
        raise KafkaOpError.wrap(f"cannot write to {topic}", KafkaException(failures[0]))
    return count
