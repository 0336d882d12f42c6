"""Follower and the observing admin calls against the real broker."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from exchange.config import ExchangeSettings
from exchange.kafka.admin import Admin, TopicSpec, plan_topics
from exchange.kafka.control import end_marks, publish
from exchange.kafka.follow import Follower


def _topic(settings: ExchangeSettings, partitions: int = 2) -> str:
    name = f"test.follow.{uuid.uuid4().hex[:10]}"
    admin = Admin(settings.kafka)
    admin.apply(plan_topics([TopicSpec(name, partitions, 1)], {}))
    return name


def _records(n: int, start: int = 0) -> list[tuple[str, bytes | None]]:
    return [(f"k{i}", f"v{i}".encode()) for i in range(start, start + n)]


def test_follower_reads_everything_once_then_only_what_is_new(platform: ExchangeSettings) -> None:
    topic = _topic(platform)
    follower = Follower(platform.kafka, topic)
    try:
        assert follower.read_new() == [] and follower.caught_up
        publish(platform.kafka, topic, _records(50))
        first = follower.read_new()
        assert sorted(m.value or b"" for m in first) == sorted(v or b"" for _k, v in _records(50))
        assert follower.caught_up
        started = time.monotonic()
        assert follower.read_new() == []
        # Caught up: it does not wait out its budget (5 s) when nothing is new.
        assert time.monotonic() - started < 2.5
        publish(platform.kafka, topic, _records(7, 50))
        assert {m.key for m in follower.read_new()} == {f"k{i}".encode() for i in range(50, 57)}
        # A budget too small for the backlog leaves the rest for the next call.
        publish(platform.kafka, topic, _records(30, 57))
        part = follower.read_new(max_records=10)
        assert len(part) >= 10 and not follower.caught_up
        rest = follower.read_new()
        assert len(part) + len(rest) == 30 and follower.caught_up
    finally:
        follower.close()


def test_admin_reports_end_offsets_groups_and_commits(platform: ExchangeSettings) -> None:
    topic = _topic(platform, partitions=1)
    publish(platform.kafka, topic, _records(12))
    admin = Admin(platform.kafka)
    assert admin.end_offsets([(topic, 0)]) == {(topic, 0): 12}
    assert admin.partition_counts()[topic] == 1
    group = f"test.group.{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        platform.kafka.client_config(**{"group.id": group, "enable.auto.commit": False})
    )
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 9)], asynchronous=False)
        assert group in admin.consumer_groups()
        assert admin.committed_offsets(group) == {(topic, 0): 9}
    finally:
        consumer.close()
    assert admin.group_members(group) == 0


def test_end_marks_move_only_when_the_topic_is_written(platform: ExchangeSettings) -> None:
    topic = _topic(platform, partitions=2)
    empty = end_marks(platform.kafka, topic)
    assert empty == (0, 0)
    assert end_marks(platform.kafka, topic) == empty
    publish(platform.kafka, topic, _records(5))
    written = end_marks(platform.kafka, topic)
    assert sum(written) == 5
    assert end_marks(platform.kafka, f"{topic}.missing") == ()
