"""Deliveries handed to librdkafka directly: attached only to a real producer it can verify,
resumed after a full queue, refusals sorted like confluent-kafka's. The producers here point at
a closed port; nothing is sent (librdkafka queues locally)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import Producer

from exchange._kernel import Deliveries, NativeProducer, ProduceError
from exchange.kafka.native import attach, librdkafka_path
from exchange.kafka.transactions import TransactionalProducer, TransactionError


@pytest.fixture
def make_producer() -> Iterator[Any]:
    made: list[Producer] = []

    def make(**config: Any) -> Producer:
        conf = {"bootstrap.servers": "127.0.0.1:1", "client.id": "unit", "log_level": 0}
        made.append(Producer({**conf, **config}))
        return made[-1]

    yield make
    for p in made:
        with contextlib.suppress(RuntimeError):  # closed by the test
            p.purge()


def columns(n: int) -> Deliveries:
    keys = [f"k{i}".encode() for i in range(n)]
    values: list[bytes | None] = [f"v{i}".encode() for i in range(n)]
    values[-1] = None  # a tombstone, with headers
    headers = {n - 1: [("exchange.grant", b"g"), ("exchange.none", None)]}
    return Deliveries.from_columns(keys, values, [0] * n, headers)  # type: ignore[arg-type]


def test_the_loaded_librdkafka_is_found_in_the_memory_map(tmp_path: Path) -> None:
    import confluent_kafka  # noqa: F401  (loads librdkafka)

    path = librdkafka_path()
    assert path is not None and Path(path).name.startswith("librdkafka")
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n")
    assert librdkafka_path(maps) is None
    assert librdkafka_path(tmp_path / "absent") is None
    # The bundled copy wins over another one loaded; librdkafka++ is not the C library.
    bundled = str(Path(path).parent / "librdkafka-0123abcd.so.1")
    maps.write_text(
        "".join(
            f"7f00-7f01 r-xp 00000000 08:01 1 {p}\n"
            for p in ("/usr/lib/librdkafka.so.1", bundled, "/usr/lib/librdkafka++.so.1")
        )
    )
    assert librdkafka_path(maps) == bundled
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/librdkafka++.so.1\n")
    assert librdkafka_path(maps) is None


def test_deliveries_keep_their_columns() -> None:
    d = columns(3)
    assert len(d) == 3
    assert d.keys() == [b"k0", b"k1", b"k2"]
    assert d.values() == [b"v0", b"v1", None]
    assert d.partitions() == [0, 0, 0]
    assert d.headers() == {2: [("exchange.grant", b"g"), ("exchange.none", None)]}
    with pytest.raises(ValueError, match="differ in length"):
        Deliveries.from_columns([b"k"], [], [0], {})


def test_attach_checks_the_handle_against_the_client_id(make_producer: Any) -> None:
    producer = make_producer()
    assert attach(producer, "unit") is not None
    assert attach(producer, "someone-else") is None  # the name does not match: not used
    assert attach(object(), "unit") is None


def test_only_a_confluent_producer_of_the_loaded_library_is_attached(make_producer: Any) -> None:
    path = librdkafka_path()
    assert path is not None
    version = confluent_kafka.libversion()[1]
    with pytest.raises(ValueError, match=r"not a confluent_kafka\.Producer"):
        NativeProducer(b"x" * 100, path, "unit#producer-", version)
    with pytest.raises(ValueError, match="confluent-kafka uses"):
        NativeProducer(make_producer(), path, "unit#producer-", version + 1)
    with pytest.raises(ValueError, match="not loaded"):
        NativeProducer(make_producer(), "/nonexistent/librdkafka.so.1", "unit#producer-", version)


def test_a_closed_producer_is_refused_not_used(make_producer: Any) -> None:
    producer = make_producer()
    native = attach(producer, "unit")
    assert native is not None
    producer.close()  # confluent-kafka destroys the handle; the object lives on
    with pytest.raises(ProduceError, match="closed"):
        columns(2).produce(native, "dlv", 0)
    del native  # its topic handles went with the producer: nothing is released twice


def test_a_full_queue_stops_the_produce_and_it_resumes_from_there(make_producer: Any) -> None:
    producer = make_producer(**{"queue.buffering.max.messages": 2})
    native = attach(producer, "unit")
    assert native is not None
    d = columns(5)
    assert d.produce(native, "dlv", 0) == 2
    drain(producer)
    assert d.produce(native, "dlv", 2) == 4
    drain(producer)
    assert d.produce(native, "dlv", 4) == 5


def drain(producer: Producer) -> None:
    """Empty the local queue: purged records count until their reports are served."""
    producer.purge()
    producer.flush(5)


def test_a_refused_delivery_is_a_transaction_error(make_producer: Any) -> None:
    txn = TransactionalProducer({"client.id": "unit"}, "t", 1.0, native=True)
    # Not initialised: librdkafka refuses to produce for a transaction not begun.
    txn._producer = make_producer(**{"transactional.id": "t"})
    txn._native = attach(txn._producer, "unit")
    with pytest.raises(TransactionError, match="cannot produce to dlv") as caught:
        txn.produce_many("dlv", columns(2))
    assert caught.value.code == "_STATE" and caught.value.kind == "abortable"
