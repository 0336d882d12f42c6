"""ProducerPool: topics shared out over producers, each topic always on the same one."""

from __future__ import annotations

from exchange.kafka.producing import ProducerPool

# No broker is contacted: nothing is produced.
CONFIG = {"bootstrap.servers": "localhost:1", "socket.connection.setup.timeout.ms": 1000}


def test_topics_are_shared_out_and_stay_with_their_producer() -> None:
    pool = ProducerPool(CONFIG, partitions_per_producer=3)
    first = {t: pool.for_topic(t) for t in (f"dlv.t{i}" for i in range(7))}
    assert len(pool.producers) == 3
    counts = [sum(1 for p in first.values() if p is producer) for producer in pool.producers]
    assert counts == [3, 3, 1]
    # Asked again, in another order: the same producer, and no new one.
    assert all(pool.for_topic(t) is first[t] for t in reversed(list(first)))
    assert len(pool.producers) == 3


def test_topics_of_many_partitions_get_producers_of_their_own() -> None:
    pool = ProducerPool(CONFIG, partitions_per_producer=1000)
    big = [pool.for_topic(f"dlv.c{i}.e", partitions=1000) for i in range(3)]
    assert len({id(p) for p in big}) == 3
    small = [pool.for_topic(f"dlv.c{i}.f", partitions=4) for i in range(3)]
    assert len({id(p) for p in small}) == 1 and small[0] not in big
    # Bigger than the limit: alone on one producer, then the next topic starts another.
    huge = pool.for_topic("dlv.c0.g", partitions=5000)
    assert pool.for_topic("dlv.c0.h", partitions=1) is not huge
    assert len(pool.producers) == 6


def test_past_the_most_producers_new_topics_go_to_the_least_loaded() -> None:
    pool = ProducerPool(CONFIG, partitions_per_producer=10, max_producers=2)
    a = pool.for_topic("dlv.a", partitions=10)
    b = pool.for_topic("dlv.b", partitions=4)
    assert a is not b and len(pool.producers) == 2
    assert pool.for_topic("dlv.c", partitions=10) is b  # b carries 4, a 10
    assert pool.for_topic("dlv.d", partitions=1) is a  # now a 10, b 14
    assert len(pool.producers) == 2
    assert pool.for_topic("dlv.c") is b  # a topic stays where it went first


def test_nothing_pending_flushes_at_once() -> None:
    pool = ProducerPool(CONFIG)
    assert pool.flush(1.0) == 0
    pool.for_topic("dlv.a")
    pool.poll()
    assert pool.flush(1.0) == 0
