"""``watermarks``: a partition whose leader is still being elected is waited for, not an error."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from exchange.kafka.control import watermarks
from exchange.kafka.errors import KafkaOpError


class FlakyClient:
    """Answers with the given errors first, then with the watermarks."""

    def __init__(self, *errors: int, answer: tuple[int, int] | None = (0, 7)) -> None:
        self.errors = list(errors)
        self.answer = answer
        self.calls = 0

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int] | None:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return self.answer


def test_a_leader_election_is_waited_out() -> None:
    client = FlakyClient(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
    assert watermarks(client, "t", 0, timeout=5) == (0, 7)  # type: ignore[arg-type]
    assert client.calls == 3


def test_other_errors_are_raised_with_their_code_at_once() -> None:
    client = FlakyClient(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaOpError) as caught:
        watermarks(client, "t", 3, timeout=5)  # type: ignore[arg-type]
    assert caught.value.code == "TOPIC_AUTHORIZATION_FAILED"
    assert "t[3]" in str(caught.value)
    assert client.calls == 1


def test_timeouts_and_a_topic_not_yet_known_are_retried() -> None:
    client = FlakyClient(KafkaError._TIMED_OUT, KafkaError.UNKNOWN_TOPIC_OR_PART)
    assert watermarks(client, "t", 0, timeout=5) == (0, 7)  # type: ignore[arg-type]
    assert client.calls == 3


def test_an_election_that_outlasts_the_timeout_is_an_error() -> None:
    client = FlakyClient(*[KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    started = time.monotonic()
    with pytest.raises(KafkaOpError) as caught:
        watermarks(client, "t", 0, timeout=0.5)  # type: ignore[arg-type]
    assert caught.value.code == "NOT_LEADER_FOR_PARTITION"
    # Retried within the timeout (the client answers at once here), then given up: a
    # generous bound, only to catch a retry loop that ignores its deadline.
    assert client.calls >= 3
    assert time.monotonic() - started < 0.5 + 1.0


def test_no_answer_is_a_timeout() -> None:
    with pytest.raises(KafkaOpError) as caught:
        watermarks(FlakyClient(answer=None), "t", 0, timeout=1)  # type: ignore[arg-type]
    assert caught.value.code == "_TIMED_OUT"
