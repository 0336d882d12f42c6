"""Reading the backfill progress at start-up waits out a stopped worker's open transaction."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.config import ExchangeSettings
from exchange.kafka.errors import KafkaOpError
from exchange.routing import worker


def test_progress_is_read_again_while_a_transaction_holds_its_end_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[Any] = [
        KafkaOpError("timed out reading exchange.router-backfills to its end", code="_TIMED_OUT"),
        KafkaOpError("timed out reading exchange.router-backfills to its end", code="_TIMED_OUT"),
        [],
    ]

    def read(_settings: ExchangeSettings) -> list[Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    monkeypatch.setattr(worker, "read_progress", read)
    assert worker.read_progress_patiently(ExchangeSettings()) == []
    assert answers == []


def test_other_failures_and_a_long_wait_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(_settings: ExchangeSettings) -> list[Any]:
        raise KafkaOpError("cannot read exchange.router-backfills", code="TOPIC_AUTHORIZATION")

    monkeypatch.setattr(worker, "read_progress", refused)
    with pytest.raises(KafkaOpError, match="TOPIC_AUTHORIZATION"):
        worker.read_progress_patiently(ExchangeSettings())

    def slow(_settings: ExchangeSettings) -> list[Any]:
        raise KafkaOpError("timed out", code="_TIMED_OUT")

    monkeypatch.setattr(worker, "read_progress", slow)
    monkeypatch.setattr(worker, "PROGRESS_WAIT_S", -1.0)
    with pytest.raises(KafkaOpError, match="timed out"):
        worker.read_progress_patiently(ExchangeSettings())
