"""Following a topic: each call returns what was appended since the last one (monitor, status)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from exchange.config.settings import KafkaSettings
from exchange.kafka.control import Message, partitions, reader, to_message, watermarks
from exchange.kafka.errors import KafkaOpError

log = logging.getLogger(__name__)
#: Errors that say this principal may not read a topic.
REFUSED = frozenset({"TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"})


class Follower:
    """Reads a whole topic once, then only what is new; partitions added later are picked up.

    Each call reads up to the ends as they were when it started, so a topic written without
    pause does not keep it going. ``committed`` reads only committed transactions (the audit
    topic): its end is then the last stable offset, and a transaction still open is read by a
    later call.
    """

    def __init__(self, settings: KafkaSettings, topic: str, *, committed: bool = False) -> None:
        self.topic = topic
        self._timeout = settings.request_timeout_s
        self._consumer = reader(settings, committed=committed)
        #: Per assigned partition, the offset after the last record read (or its end marker).
        self._next: dict[int, int] = {}
        #: The last call read every partition to its end (rather than running out of budget).
        self.caught_up = False

    def read_new(self, budget_s: float = 5.0, max_records: int = 100_000) -> list[Message]:
        """New records up to the current ends, within ``budget_s`` and ``max_records``.

        A large backlog (the first read of a long topic) is read over several calls.
        """
        self._assign_new()
        pending = {}
        for p, after in self._next.items():
            low, high = watermarks(self._consumer, self.topic, p, self._timeout)
            if max(after, low) < high:
                pending[p] = high
        out: list[Message] = []
        deadline = time.monotonic() + budget_s
        while pending and len(out) < max_records and time.monotonic() < deadline:
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            partition = int(msg.partition() or 0)
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaOpError.wrap(f"cannot read {self.topic}", KafkaException(err))
                # The end reported may be an earlier one, still queued from the last call.
                at = int(msg.offset() or 0)
                if partition in pending and at >= pending[partition]:
                    # What lies between the last record and the end are transaction markers.
                    self._next[partition] = max(self._next[partition], pending.pop(partition))
                continue
            offset = int(msg.offset() or 0)
            self._next[partition] = offset + 1
            out.append(to_message(msg))
            if partition in pending and offset + 1 >= pending[partition]:
                del pending[partition]
        self.caught_up = not pending
        return out

    def _assign_new(self) -> None:
        found = set(partitions(self._consumer, self.topic, self._timeout))
        new = sorted(found - set(self._next))
        if new:
            self._consumer.incremental_assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new]
            )
            self._next.update(dict.fromkeys(new, 0))

    def close(self) -> None:
        self._consumer.close()


class RecordCounter:
    """Counts the committed records of a set of topics with one consumer: each call reads only
    what is new since the last (the monitor's source figures).

    A topic's end offset also counts its writers' transaction markers and aborted records
    (a transactional connector leaves one marker per partition per checkpoint), so the records
    on it are counted by reading, read committed, without keeping them. What compaction removed
    before the first read is not counted (a restarted monitor counts what the topics hold).
    """

    def __init__(
        self, settings: KafkaSettings, on_record: Callable[[Message], None] | None = None
    ) -> None:
        self._settings = settings
        #: Given each record read (the quality worker measures them; the monitor only counts).
        self._on_record = on_record
        self._consumer: Consumer | None = None
        self._paused = False
        #: Per assigned partition, the offset after the last record read (or its end marker).
        self._next: dict[tuple[str, int], int] = {}
        self._wanted: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        #: Topics this principal may not read (the secure platform's monitor may not read
        #: source topics: only the router reads what departments publish).
        self.refused: set[str] = set()
        #: The last call read every partition to its end (rather than running out of budget).
        self.caught_up = False

    def update(self, topics: Mapping[str, int], budget_s: float = 5.0) -> Counter[str]:
        """The records counted per topic after reading what is new in ``topics`` (name ->
        partition count) within ``budget_s``; topics no longer named, or refused to this
        principal (:attr:`refused`), are dropped."""
        consumer = self._client()
        self.pause(False)
        timeout = self._settings.request_timeout_s
        self._follow(consumer, {t: n for t, n in topics.items() if t not in self.refused})
        pending = {}
        for tp, after in list(self._next.items()):
            try:
                low, high = watermarks(consumer, *tp, timeout)
            except KafkaOpError as exc:
                if exc.code not in REFUSED:
                    raise
                self._refuse(consumer, tp[0], exc)
                continue
            if max(after, low) < high:
                pending[tp] = high
        deadline = time.monotonic() + budget_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.2):
                tp = (str(msg.topic()), int(msg.partition() or 0))
                err = msg.error()
                if err is not None:
                    if err.name() in REFUSED:
                        self._refuse(consumer, tp[0], err.str())
                        pending = {p: e for p, e in pending.items() if p[0] != tp[0]}
                        continue
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaOpError.wrap(f"cannot read {tp[0]}", KafkaException(err))
                    if tp in pending and int(msg.offset() or 0) >= pending[tp]:
                        self._next[tp] = max(self._next[tp], pending.pop(tp))
                    continue
                offset = int(msg.offset() or 0)
                self._next[tp] = offset + 1
                self.counts[tp[0]] += 1
                if self._on_record is not None:
                    self._on_record(to_message(msg))
                if tp in pending and offset + 1 >= pending[tp]:
                    del pending[tp]
        self.caught_up = not pending
        return self.counts

    def pause(self, paused: bool) -> None:
        """Stop (or restart) fetching: librdkafka fetches ahead into its queue even while
        nobody calls :meth:`update`, which costs the broker and this process as much as
        reading (the quality worker pauses while the router is busy)."""
        if self._consumer is None or paused == self._paused:
            return
        assigned = self._consumer.assignment()
        if assigned:
            (self._consumer.pause if paused else self._consumer.resume)(assigned)
        self._paused = paused

    def _refuse(self, consumer: Consumer, topic: str, why: object) -> None:
        if topic in self.refused:
            return
        log.warning("may not read %s (%s): its records are counted as offsets", topic, why)
        self.refused.add(topic)
        self._follow(consumer, {t: n for t, n in self._wanted.items() if t not in self.refused})

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = reader(self._settings, committed=True)
        return self._consumer

    def _follow(self, consumer: Consumer, topics: Mapping[str, int]) -> None:
        self._wanted = dict(topics)
        wanted = {(t, p) for t, count in topics.items() for p in range(count)}
        gone = sorted(set(self._next) - wanted)
        if gone:
            consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])
            for tp in gone:
                del self._next[tp]
            for topic in {t for t, _p in gone} - set(topics):
                self.counts.pop(topic, None)
        new = sorted(wanted - set(self._next))
        if new:
            consumer.incremental_assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in new])
            self._next.update(dict.fromkeys(new, 0))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
