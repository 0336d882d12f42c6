"""Library errors wrapped with codes the callers decide on."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from exchange.kafka.errors import KafkaOpError


def test_a_kafka_error_keeps_its_name_and_retriability() -> None:
    err = KafkaOpError.wrap("read offsets", KafkaException(KafkaError(KafkaError._TRANSPORT)))
    assert err.code == "_TRANSPORT" and err.message.startswith("read offsets: ")


def test_an_unanswered_request_is_a_retriable_timeout_that_says_so() -> None:
    err = KafkaOpError.wrap("read offsets of group g failed for g", TimeoutError())
    assert (err.code, err.retriable) == ("_TIMED_OUT", True)
    assert err.message == "read offsets of group g failed for g: no answer in time"
