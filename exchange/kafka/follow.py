"""Following a topic: each call returns what was appended since the last one (monitor, status)."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from exchange.config.settings import KafkaSettings
from exchange.kafka.control import Message, partitions, reader, to_message, watermarks
from exchange.kafka.errors import KafkaOpError


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
