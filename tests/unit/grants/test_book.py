"""The grant book against a scripted consumer: it recovers from a failing reader, rebuilds the
table from the start, and reports its age; the router fails closed when the book is stale."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError

from exchange.config import ExchangeSettings
from exchange.grants import book as book_module
from exchange.grants.book import GrantBook
from exchange.kafka.errors import KafkaOpError
from exchange.routing.worker import book_staleness
from tests.unit.grants.fixtures import grant


@dataclass
class Msg:
    key_: bytes | None = None
    value_: bytes | None = None
    eof: bool = False
    offset_: int = 0
    code: int | None = None  # an error event instead of a record

    def error(self) -> Any:
        if self.code is not None:
            return KafkaError(self.code)
        if not self.eof:
            return None
        return KafkaError(KafkaError._PARTITION_EOF)

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_


@dataclass
class Script:
    """Per consumer made: the messages it returns, then ``fail`` (raised) or ``None`` forever."""

    runs: list[tuple[list[Msg], Exception | None]]
    made: int = 0
    closed: int = 0
    assigned: list[Any] = field(default_factory=list)

    def consumer(self) -> Any:
        messages, fail = self.runs[min(self.made, len(self.runs) - 1)]
        self.made += 1
        feed: Iterator[Msg] = iter(list(messages))
        script = self

        class Consumer:
            def assign(self, tps: Any) -> None:
                script.assigned.append(tps)

            def poll(self, timeout: float) -> Msg | None:
                nxt = next(feed, None)
                if nxt is not None:
                    return nxt
                if fail is not None:
                    raise fail
                if messages and messages[-1].code is not None:
                    time.sleep(0.005)
                    return messages[-1]  # an error event repeats, as librdkafka's do
                time.sleep(0.005)
                return None

            def close(self) -> None:
                script.closed += 1

        return Consumer()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[[Script], GrantBook]:
    monkeypatch.setattr(book_module, "RETRY_WAITS_S", (0.01,))

    def make(script: Script) -> GrantBook:
        monkeypatch.setattr(book_module, "reader", lambda *a, **k: script.consumer())
        monkeypatch.setattr(book_module, "partitions", lambda *a: [0])
        return GrantBook(ExchangeSettings())

    return make


def _wait(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_failing_reader_reads_again_into_a_fresh_table(
    scripted: Callable[[Script], GrantBook],
) -> None:
    g1, g2 = grant(), grant().model_copy(update={"id": "g2"})
    script = Script(
        [
            # First: g1 and g2, then the reader fails.
            (
                [Msg(b"g1", g1.encode()), Msg(b"g2", g2.encode()), Msg(eof=True)],
                RuntimeError("boom"),
            ),
            # Meanwhile g2 was deleted (compacted away: its key is simply gone).
            ([Msg(b"g1", g1.encode()), Msg(eof=True)], None),
        ]
    )
    book = scripted(script)
    book.start(timeout=5)
    _wait(lambda: script.made == 2 and set(book.snapshot()[1]) == {"g1"})
    assert book.failures >= 1
    assert book.failure is not None and "boom" in book.failure[0]
    _wait(lambda: book.age_s() < 0.2)
    assert book.alive
    book.stop()
    assert script.closed == script.made


def test_the_book_is_current_while_it_follows(scripted: Callable[[Script], GrantBook]) -> None:
    book = scripted(Script([([Msg(b"g1", grant().encode()), Msg(eof=True)], None)]))
    book.start(timeout=5)
    time.sleep(0.1)
    assert book.age_s() < 0.1
    assert book_staleness(book, 5) is None
    book.stop()


def test_a_stale_book_stops_the_router_with_the_reason(
    scripted: Callable[[Script], GrantBook],
) -> None:
    # Every reader fails at once: the book never catches up again after the first failure.
    script = Script(
        [
            ([Msg(b"g1", grant().encode()), Msg(eof=True)], RuntimeError("disk on fire")),
            ([], RuntimeError("disk on fire")),
        ]
    )
    book = scripted(script)
    book.start(timeout=5)
    _wait(lambda: script.made >= 3)
    time.sleep(0.05)
    stale = book_staleness(book, 0.01)
    assert stale is not None and stale.code == "GRANTS_STALE"
    assert "keeps failing (last: RuntimeError: disk on fire)" in str(stale)
    assert "revoked" in str(stale)
    book.stop()


def test_an_ended_reader_thread_is_named(scripted: Callable[[Script], GrantBook]) -> None:
    book = scripted(Script([([Msg(b"g1", grant().encode()), Msg(eof=True)], None)]))
    book.start(timeout=5)
    # What a killed thread looks like from outside: ended, not stopped by the router.
    book._stop.set()
    book._thread.join(5)
    book._stop.clear()
    time.sleep(0.05)
    stale = book_staleness(book, 0.01)
    assert stale is not None and "its reader thread has ended" in str(stale)


@pytest.mark.parametrize(
    ("code", "current"),
    [(KafkaError._TRANSPORT, True), (KafkaError.TOPIC_AUTHORIZATION_FAILED, False)],
)
def test_a_book_that_only_hears_errors_ages_unless_the_broker_is_away(
    scripted: Callable[[Script], GrantBook], code: int, current: bool
) -> None:
    script = Script([([Msg(b"g1", grant().encode()), Msg(eof=True), Msg(code=code)], None)])
    book = scripted(script)
    book.start(timeout=5)
    time.sleep(0.3)
    assert (book.age_s() < 0.2) is current
    book.stop()


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """The grants topic's partitions as the book's metadata checks see them (changeable)."""
    monkeypatch.setattr(book_module, "TOPIC_CHECK_S", 0.05)
    return {"partitions": [0]}


def test_a_grants_topic_deleted_under_the_book_is_a_failure_not_silence(
    scripted: Callable[[Script], GrantBook],
    topic: dict[str, list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # librdkafka gives the consumer of a deleted topic no error, only silence.
    book = scripted(Script([([Msg(b"g1", grant().encode()), Msg(eof=True)], None)]))
    monkeypatch.setattr(book_module, "partitions", lambda *a: topic["partitions"])
    book.start(timeout=5)
    topic["partitions"] = []
    _wait(lambda: book.failure is not None)
    assert book.failure is not None and "was deleted" in book.failure[0]
    time.sleep(0.3)  # read again, still missing: a failure each time, the book ages
    assert book.age_s() > 0.2
    stale = book_staleness(book, 0.1)
    assert stale is not None and "does not exist any more" in str(stale)
    book.stop()


def test_a_grants_topic_made_after_the_start_is_followed(
    scripted: Callable[[Script], GrantBook],
    topic: dict[str, list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    book = scripted(Script([([Msg(b"g1", grant().encode()), Msg(eof=True)], None)]))
    topic["partitions"] = []
    monkeypatch.setattr(book_module, "partitions", lambda *a: topic["partitions"])
    book.start(timeout=5)  # no topic: no grants, and nothing can grant any yet
    assert book.snapshot()[1] == {}
    topic["partitions"] = [0]  # `catalog apply` made it
    _wait(lambda: set(book.snapshot()[1]) == {"g1"})
    assert book.failures == 0
    book.stop()


def test_a_broker_out_of_reach_is_not_a_deleted_topic(
    scripted: Callable[[Script], GrantBook],
    topic: dict[str, list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker away: the metadata check fails like this, and nobody can change a grant.
    def away(*_a: Any) -> list[int]:
        raise KafkaOpError("cannot read metadata", code="_TRANSPORT")

    book = scripted(Script([([Msg(b"g1", grant().encode()), Msg(eof=True)], None)]))
    monkeypatch.setattr(book_module, "partitions", lambda *a: topic["partitions"])
    book.start(timeout=5)
    monkeypatch.setattr(book_module, "partitions", away)
    time.sleep(0.3)
    assert book.failures == 0 and book.age_s() < 0.2
    book.stop()
