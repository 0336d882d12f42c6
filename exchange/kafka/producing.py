"""Handing records to a confluent-kafka producer in the hot loops (connectors, router)."""

from __future__ import annotations

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
