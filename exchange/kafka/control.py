"""Control topics (``exchange.catalog``, ``exchange.grants``, ...): read whole, written acked."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
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
    #: When the broker appended the record, if its topic stamps records so
    #: (``message.timestamp.type=LogAppendTime``); ``None`` when the writer chose the time.
    appended_ms: int | None = None
    #: The record's timestamp, whoever set it (the producer, or the broker as above).
    ts_ms: int | None = None


def read_table(settings: KafkaSettings, topic: str, *, committed: bool = False) -> dict[str, bytes]:
    """The latest value per key of a compacted topic, read from the start to the current end.

    Tombstones remove their key. No consumer group offsets are committed. ``committed`` as for
    :func:`read_all` (topics written in transactions).
    """
    table: dict[str, bytes] = {}
    for msg in read_all(settings, topic, committed=committed):
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
    # A read-committed consumer's watermark is the last stable offset, which excludes a
    # transaction whose commit markers the broker has not written yet; the end must include it.
    probe = reader(settings) if committed else consumer
    try:
        return _read(consumer, probe, topic, settings.request_timeout_s, committed)
    finally:
        consumer.close()
        if probe is not consumer:
            probe.close()


def reader(settings: KafkaSettings, *, committed: bool = False) -> Consumer:
    """A consumer for reading by assignment: a throwaway group, nothing committed."""
    return Consumer(
        settings.client_config(
            **{
                "group.id": f"exchange-reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed" if committed else "read_uncommitted",
                # An offset below the log start (retention, deleted records) starts at the
                # first record there is; librdkafka's default would jump to the end and skip
                # every record still in the partition (a backfill from offset 0 did).
                "auto.offset.reset": "earliest",
            }
        )
    )


def read_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int, timeout: float
) -> list[Message]:
    """Records of one partition with ``start <= offset < end``."""
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
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaOpError.wrap(f"cannot read {topic}", KafkaException(err))
                # Read-committed: the end may lie beyond a transaction still being committed.
                # The event's offset is the fetch position, past transaction markers, which
                # the consumer's position does not step over at the end (librdkafka #3917).
                if max(_position(consumer, topic, partition), int(msg.offset() or 0)) >= end:
                    return out
                continue
            offset = int(msg.offset() or 0)
            # Transaction markers take offsets too, so `end - 1` itself may never arrive.
            if offset >= end:
                return out
            out.append(to_message(msg))
            if offset + 1 >= end:
                return out
    finally:
        consumer.unassign()


def last_record_below(
    settings: KafkaSettings, topic: str, partition: int, low: int, end: int
) -> int | None:
    """The offset of the last committed record of a partition with ``low <= offset < end``,
    or ``None``; ``end`` at most the partition's last stable offset.

    Read committed, in windows going back from ``end`` (64 offsets, then 8 times more each
    time): transaction markers and aborted records take offsets but are no records, and there
    are seldom more than a few of them at the end.
    """
    consumer = reader(settings, committed=True)
    try:
        high, width = end, 64
        while high > low:
            start = max(low, high - width)
            found = read_range(consumer, topic, partition, start, high, settings.request_timeout_s)
            if found:
                return found[-1].offset
            high, width = start, width * 8
        return None
    finally:
        consumer.close()


#: A caught-up reader's committed offset can stay behind the end by the marker of the last
#: transaction that wrote the partition (a connector's commit): librdkafka's consumer position
#: does not step over a trailing marker (librdkafka issue 3917). Lags up to this many offsets
#: are read, to count the records truly left.
MARKER_SLACK = 64


def records_between(settings: KafkaSettings, tp: tuple[str, int], start: int, end: int) -> int:
    """Committed records of one partition with ``start <= offset < end`` (markers take offsets
    but are no records); ``end - start`` if that cannot be told within the request timeout (an
    open transaction holds the partition's readable end below ``end``) or this principal may
    not read the topic."""
    consumer = reader(settings, committed=True)
    try:
        return len(read_range(consumer, *tp, start, end, settings.request_timeout_s))
    except KafkaOpError as exc:
        # Not readable by this principal (the secure platform's monitor may not read source
        # topics): offsets it is.
        if exc.code not in ("_TIMED_OUT", "TOPIC_AUTHORIZATION_FAILED"):
            raise
        return end - start
    finally:
        consumer.close()


Offsets = dict[tuple[str, int], int]


def records_behind(
    settings: KafkaSettings,
    tps: Iterable[tuple[str, int]],
    ends: Offsets,
    starts: Offsets,
    committed: Offsets,
) -> Offsets:
    """Per partition, what a group has left to read: offsets from its committed offset (or the
    log start) to the end, read and counted as records where that is at most
    :data:`MARKER_SLACK` (so a caught-up group shows none, whatever markers trail)."""
    out = {}
    for tp in tps:
        end = ends.get(tp, 0)
        behind = end - max(committed.get(tp, 0), starts.get(tp, 0))
        if 0 < behind <= MARKER_SLACK:
            behind = records_between(settings, tp, end - behind, end)
        out[tp] = max(behind, 0)
    return out


def to_message(msg: Any) -> Message:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = tuple((str(k), _bytes(v)) for k, v in pairs)
    kind, ts = msg.timestamp()
    return Message(
        str(msg.topic()),
        int(msg.partition() or 0),
        int(msg.offset() or 0),
        msg.key(),
        msg.value(),
        headers,
        int(ts) if kind == TIMESTAMP_LOG_APPEND_TIME else None,
        int(ts) if kind else None,
    )


def partitions(client: Consumer | Producer, topic: str, timeout: float) -> list[int]:
    """The topic's partition numbers; empty when the topic does not exist.

    A topic this principal may not see is an error, not "missing": the remedy differs.
    """
    try:
        metadata = client.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaOpError.wrap(f"cannot read metadata of {topic}", exc) from exc
    tmeta = metadata.topics.get(topic)
    if tmeta is not None and tmeta.error is not None:
        if tmeta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise KafkaOpError(
                f"the broker does not authorize this principal for {topic} (its ACLs come from "
                "the catalog and the grants: `exchange acl sync`)",
                code="TOPIC_AUTHORIZATION_FAILED",
            )
        return []
    if tmeta is None:
        return []
    return sorted(tmeta.partitions)


#: Errors a partition shows while its leader is being elected or moved (a topic just created,
#: a broker restarting): they pass, so a read waits for them within its timeout.
SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


def watermarks(client: Consumer, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    """The partition's low and high watermarks, waiting out a leader election within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            found = client.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=remaining
            )
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            settling = isinstance(err, KafkaError) and err.code() in SETTLING
            left = deadline - time.monotonic()
            if not settling or left <= 0:
                raise KafkaOpError.wrap(
                    f"cannot read the offsets of {topic}[{partition}]", exc
                ) from exc
            time.sleep(min(0.2, left))
            continue
        if found is None:
            raise KafkaOpError(
                f"timed out reading the offsets of {topic}[{partition}]", code="_TIMED_OUT"
            )
        low, high = found
        return int(low), int(high)


def end_marks(settings: KafkaSettings, topic: str) -> tuple[int, ...]:
    """The end offset of each of ``topic``'s partitions: while they stay the same, nothing was
    written to it (a cheap test before re-reading a whole control topic)."""
    consumer = reader(settings)
    try:
        timeout = settings.request_timeout_s
        return tuple(
            watermarks(consumer, topic, p, timeout)[1] for p in partitions(consumer, topic, timeout)
        )
    finally:
        consumer.close()


def _read(
    consumer: Consumer, probe: Consumer, topic: str, timeout: float, committed: bool
) -> list[Message]:
    pending = set()
    assignment = []
    ends = {}
    for p in partitions(consumer, topic, timeout):
        low, high = watermarks(probe, topic, p, timeout)
        if high > low:
            pending.add(p)
            ends[p] = high
            assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
    out: list[Message] = []
    if not assignment:
        return out
    consumer.assign(assignment)
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise KafkaOpError(f"timed out reading {topic} to its end", code="_TIMED_OUT")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                partition = int(msg.partition() or 0)
                # A committed read stops early while a transaction's markers are still being
                # written (the broker commits asynchronously): keep reading until the end
                # measured at the start, so a write committed just before is always seen.
                if not committed or _position(consumer, topic, partition) >= ends[partition]:
                    pending.discard(partition)
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


def _position(consumer: Consumer, topic: str, partition: int) -> int:
    (tp,) = consumer.position([TopicPartition(topic, partition)])
    return int(tp.offset)


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
