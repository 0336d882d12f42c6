"""The router's per-key state changelogs: one compacted topic per entry, a partition per source
partition, written in the router's transactions and read back a partition at a time.

Only the router reads or writes them (ACLs: ``exchange/security/acls.py``): each record says
which grants hold a key (by the key's SHA-256, not the key itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from exchange.config.settings import KafkaSettings
from exchange.kafka.admin import Admin, TopicChange, TopicSpec
from exchange.kafka.control import partitions, reader, watermarks
from exchange.kafka.errors import KafkaOpError

__all__ = [
    "SETTLED_KEY",
    "ChangelogRecords",
    "ensure_changelogs",
    "read_changelog",
    "settled_record",
    "split_settled",
]

#: A chunk of changelog records: ``(key, value)``, a ``None`` value for a tombstone.
ChangelogRecords = list[tuple[bytes, bytes | None]]
#: Records handed over per call while reading back.
CHUNK = 10_000
#: The key of a partition's settled-offset record: the source offset its committed rows routed
#: up to, written in each checkpoint's transaction (16 bytes, as a key digest is; a digest
#: equal to it is a 1 in 2**128 chance). Compaction keeps the latest.
SETTLED_KEY = b"exchange.settled"


def settled_record(offset: int) -> tuple[bytes, bytes]:
    """The settled-offset record of a checkpoint that committed its partition up to ``offset``."""
    return SETTLED_KEY, offset.to_bytes(8, "little")


def split_settled(records: ChangelogRecords) -> tuple[ChangelogRecords, int | None]:
    """The state rows of a chunk read back, and the last settled offset in it (if any)."""
    rows: ChangelogRecords = []
    settled = None
    for key, value in records:
        if key == SETTLED_KEY:
            if value is not None and len(value) == 8:
                settled = int.from_bytes(value, "little")
        else:
            rows.append((key, value))
    return rows, settled


def ensure_changelogs(admin: Admin, wanted: Mapping[str, int], replication_factor: int) -> None:
    """Create the changelogs in ``wanted`` (topic -> partitions) not there yet, and give those
    with fewer partitions than their source the missing ones."""
    existing = admin.partition_counts()
    changes = []
    for topic, count in sorted(wanted.items()):
        have = existing.get(topic)
        if have is None:
            spec = TopicSpec(topic, count, replication_factor, {"cleanup.policy": "compact"})
            changes.append(TopicChange(topic, "create", ("state changelog",), spec=spec))
        elif have < count:
            changes.append(TopicChange(topic, "update", ("source grew",), add_partitions_to=count))
    if changes:
        admin.apply(changes, exist_ok=True)


def read_changelog(
    settings: KafkaSettings,
    topic: str,
    partition: int,
    apply: Callable[[ChangelogRecords], None],
) -> int:
    """Read one partition from its start to its end as of now, committed records only, and hand
    them to ``apply`` a chunk at a time (a city's entry does not fit in Python objects at once).
    Returns how many records were read. Waits for the router's own open transaction to be
    decided (the broker's transaction timeout at worst) and fails after the request timeout
    without progress."""
    consumer = reader(settings, committed=True)
    # A committed reader's watermark stops before an open transaction: the end is the log's.
    probe = reader(settings)
    timeout = settings.request_timeout_s
    try:
        if partition not in partitions(probe, topic, timeout):
            return 0
        low, end = watermarks(probe, topic, partition, timeout)
        if end <= low:
            return 0
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        read = 0
        quiet_since = time.monotonic()
        while True:
            chunk, done = _next_chunk(consumer, topic, partition, end)
            if chunk:
                apply(chunk)
                read += len(chunk)
                quiet_since = time.monotonic()
            if done:
                return read
            if time.monotonic() - quiet_since > timeout:
                raise KafkaOpError(
                    f"timed out reading {topic}[{partition}] back ({read:,} records read)",
                    code="_TIMED_OUT",
                    retriable=True,
                )
    finally:
        consumer.close()
        probe.close()


def _next_chunk(
    consumer: Consumer, topic: str, partition: int, end: int
) -> tuple[ChangelogRecords, bool]:
    out: ChangelogRecords = []
    # A short wait: a partition smaller than a chunk would otherwise cost the whole wait.
    for msg in consumer.consume(CHUNK, 0.05):
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                raise KafkaOpError.wrap(f"cannot read {topic}", KafkaException(err))
            (tp,) = consumer.position([TopicPartition(topic, partition)])
            if tp.offset >= end:
                return out, True
            continue
        offset = int(msg.offset() or 0)
        if offset >= end:
            return out, True
        out.append((msg.key() or b"", msg.value()))
        if offset + 1 >= end:
            return out, True
    return out, False
