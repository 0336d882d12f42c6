"""The audit writer's staging against a fake producer: a seal that could not be staged whole
leaves the chain where it was, so sealing again links to the last committed event."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.audit.events import GENESIS, Chain, Happening
from exchange.audit.writer import AuditWriter
from exchange.config import ExchangeSettings


class FullAfter:
    """A transactional producer whose local queue stays full after ``room`` records."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[bytes | None] = []

    def produce_waiting(self, topic: str, key: Any, value: Any, **_: Any) -> None:
        if len(self.records) == self.room:
            raise BufferError("the producer's queue stayed full for 30.0 s")
        self.records.append(value)


class Encoder:
    def encode(self, record: dict[str, Any]) -> bytes:
        return str(record["sequence"]).encode()


def writer(txn: Any) -> AuditWriter:
    chain = Chain("router.t", "sha256", None)
    return AuditWriter(ExchangeSettings(), "router.t", txn, Encoder(), 0, chain)  # type: ignore[arg-type]


def happening(i: int) -> Happening:
    return Happening("delivery.receipt", "router.t", 1000 + i, {"count": i})


def test_a_seal_not_staged_whole_is_rewound() -> None:
    txn = FullAfter(room=1)
    w = writer(txn)
    with pytest.raises(BufferError):
        w.stage([happening(0), happening(1)])
    assert (w.chain.next_sequence, w.chain.last_hash) == (0, GENESIS)
    txn.room = 10
    txn.records.clear()
    events = w.stage([happening(0), happening(1)])
    assert [e.sequence for e in events] == [0, 1] and events[0].prev_hash == GENESIS
    assert txn.records == [b"0", b"1"]
