"""The transactional producer's hot loop against a fake client: columns handed over in order,
headers only where given, and a full local queue resumed from where it stopped."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from exchange._kernel import Deliveries
from exchange.kafka.transactions import TransactionalProducer, TransactionError, failure_kind


class FakeClient:
    """Accepts ``room`` records, then raises BufferError once (librdkafka's queue is full)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[Any, ...]] = []

    def produce(self, *args: Any, headers: Any = None) -> None:
        if len(self.records) == self.room:
            self.room = 10**9
            raise BufferError("queue full")
        self.records.append((*args, headers))


def producer(client: Any) -> TransactionalProducer:
    p = TransactionalProducer({}, "t", 1.0)
    p._producer = client  # the fake stands in for the confluent client
    return p


def test_columns_are_produced_in_order_and_resumed_after_a_full_queue() -> None:
    client = FakeClient(room=2)
    p = producer(client)
    keys, values, partitions = (
        [b"k0", b"k1", b"k2", b"k3"],
        [b"v0", b"v1", b"v2", None],
        [0, 1, -1, 2],
    )
    headers = {3: [("exchange.grant", b"g")]}
    deliveries = Deliveries.from_columns(keys, values, partitions, headers)
    stopped = p.produce_many("dlv", deliveries)
    assert stopped == 2
    assert p.produce_many("dlv", deliveries, stopped) == 4
    assert client.records == [
        ("dlv", b"v0", b"k0", 0, None),
        ("dlv", b"v1", b"k1", 1, None),
        ("dlv", b"v2", b"k2", -1, None),
        ("dlv", None, b"k3", 2, [("exchange.grant", b"g")]),
    ]


def test_without_headers_the_fast_loop_resumes_too() -> None:
    client = FakeClient(room=1)
    p = producer(client)
    keys, values, partitions = [b"a", b"b", b"c"], [b"1", b"2", b"3"], [0, 0, 0]
    deliveries = Deliveries.from_columns(keys, values, partitions, {})
    assert p.produce_many("dlv", deliveries) == 1
    assert p.produce_many("dlv", deliveries, 1) == 3
    assert [r[2] for r in client.records] == [b"a", b"b", b"c"]


def test_a_client_error_is_sorted_into_a_transaction_error() -> None:
    class Failing:
        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise KafkaException(KafkaError(KafkaError._FENCED))

    with pytest.raises(TransactionError) as caught:
        producer(Failing()).produce_many("dlv", Deliveries.from_columns([b"k"], [b"v"], [0], {}))
    assert caught.value.kind == "fenced"


def test_a_fatal_producer_is_fatal_even_without_the_flag() -> None:
    # confluent-kafka's produce reports a fatal producer as _FATAL with fatal() False.
    assert failure_kind(KafkaError(KafkaError._FATAL)) == "fatal"


class FullFor:
    """Raises BufferError (queue full) on the first ``times`` produce calls; counts polls."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.polls = 0
        self.records: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.times > 0:
            self.times -= 1
            raise BufferError("queue full")
        self.records.append({"topic": topic, **kwargs})

    def poll(self, _timeout: float) -> int:
        self.polls += 1
        return 0


def test_produce_waiting_polls_until_the_queue_has_room() -> None:
    client = FullFor(times=3)
    producer(client).produce_waiting("audit", b"k", b"v", partition=2)
    assert client.polls == 3
    assert client.records == [{"topic": "audit", "value": b"v", "key": b"k", "partition": 2}]


def test_produce_waiting_gives_up_when_the_queue_stays_full() -> None:
    client = FullFor(times=10**9)
    with pytest.raises(BufferError, match=r"stayed full for 0\.1 s"):
        producer(client).produce_waiting("audit", b"k", b"v", wait_s=0.1)
    assert client.records == []


def test_produce_all_hands_over_every_delivery_through_a_full_queue() -> None:
    client = FakeClient(room=2)
    client.poll = lambda _timeout: 0  # type: ignore[attr-defined]
    deliveries = Deliveries.from_columns([b"a", b"b", b"c"], [b"1", b"2", b"3"], [0, 0, 0], {})
    producer(client).produce_all("dlv", deliveries)
    assert [r[2] for r in client.records] == [b"a", b"b", b"c"]


class ServedClient:
    """Acknowledges one record per poll that the test allows (``acks`` released)."""

    def __init__(self, outstanding: int) -> None:
        self.outstanding = outstanding
        self.acks = threading.Semaphore(0)

    def poll(self, timeout: float) -> int:
        if not self.acks.acquire(timeout=timeout):
            return 0
        self.outstanding -= 1
        return 1

    def __len__(self) -> int:
        return self.outstanding


def serving(client: ServedClient) -> tuple[TransactionalProducer, threading.Thread]:
    p = producer(client)
    thread = threading.Thread(target=p._serve, args=(client,), daemon=True)
    thread.start()
    return p, thread


def test_drain_returns_once_the_poll_thread_served_every_acknowledgement() -> None:
    client = ServedClient(outstanding=3)
    p, thread = serving(client)
    for _ in range(3):
        client.acks.release()
    try:
        assert p.drain(timeout_s=30)
        assert len(client) == 0
    finally:
        p.drop()
        thread.join()


def test_drain_says_so_when_records_stay_unacknowledged() -> None:
    client = ServedClient(outstanding=2)
    p, thread = serving(client)
    client.acks.release()  # one of the two is acknowledged, the other never
    try:
        assert not p.drain(timeout_s=0.2)
        assert len(client) == 1
    finally:
        p.drop()
        thread.join()
