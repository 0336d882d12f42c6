"""Handing records to a confluent-kafka producer in the hot loops (connectors, router)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from exchange.kafka.errors import KafkaOpError

#: Serve delivery callbacks every this many records: poll(0) after each one costs more, and a
#: flush at the end of a batch serves the rest.
POLL_EVERY = 64


def produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, str | bytes | None]] | None = None,
    on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
) -> None:
    """Hand one record to ``producer``, waiting while its local queue is full (a large batch
    or backfill) instead of failing; :class:`KafkaOpError` if the producer refuses it."""
    while True:
        try:
            producer.produce(
                topic,
                value=value,
                key=key,
                headers=list(headers) if headers is not None else None,
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            # Deliveries drain the queue.
            producer.poll(0.05)
        except KafkaException as exc:
            raise KafkaOpError.wrap(f"cannot produce to {topic}", exc) from exc


class ProducerPool:
    """Producers that share out the topics written to, at most ``partitions_per_producer``
    partitions each (a topic bigger than that gets a producer of its own), and at most
    ``max_producers`` producers (each has its threads, connections and buffers): once there are
    that many, a new topic goes to the least loaded one.

    Two librdkafka costs grow with what one producer writes to. It finds a topic's handle by a
    linear scan over every topic it has written to: a produce call costs 0.6 µs with 10 topics
    and 45 µs with 10,000 (measured). And it sends one request per partition, with idempotence
    at most 5 in flight on its one connection per broker, so a batch touching thousands of
    partitions waits on round trips one connection at a time. A router with thousands of grants
    writes to thousands of delivery topics, or to a few topics of thousands of partitions. A
    topic stays with the producer it was first given to, so records of one partition keep their
    order.
    """

    def __init__(
        self,
        config: dict[str, Any],
        partitions_per_producer: int = 1000,
        max_producers: int = 16,
    ) -> None:
        self._config = config
        self._limit = partitions_per_producer
        self._max = max_producers
        self._by_topic: dict[str, Producer] = {}
        self.producers: list[Producer] = []
        #: Partitions given to each producer, in the order of ``producers``.
        self._load: list[int] = []

    def for_topic(self, topic: str, partitions: int = 1) -> Producer:
        """The topic's producer; ``partitions`` (the topic's) counts the first time only."""
        producer = self._by_topic.get(topic)
        if producer is not None:
            return producer
        if not self.producers or (
            self._load[-1] + partitions > self._limit and len(self.producers) < self._max
        ):
            self.producers.append(Producer(self._config))
            self._load.append(0)
        index = len(self.producers) - 1
        if self._load[index] + partitions > self._limit:
            index = min(range(len(self._load)), key=self._load.__getitem__)
        self._load[index] += partitions
        producer = self._by_topic[topic] = self.producers[index]
        return producer

    def poll(self) -> None:
        for producer in self.producers:
            producer.poll(0)

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` in all for every producer; records still not acknowledged."""
        deadline = time.monotonic() + timeout_s
        return sum(p.flush(max(0.0, deadline - time.monotonic())) for p in self.producers)
