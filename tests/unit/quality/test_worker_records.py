"""The quality worker passes over source records of a department's own making that are not
change envelopes (another registered schema, a record where the change's should be)."""

from __future__ import annotations

from typing import Any

from exchange.config import ExchangeSettings
from exchange.kafka.control import Message
from exchange.quality.measures import EntryTally
from exchange.quality.worker import QualityWorker


class FakeLookup:
    def __init__(self, decoded: dict[bytes, Any]) -> None:
        self.decoded = decoded

    def decode(self, value: bytes) -> Any:
        return self.decoded[value]


def test_records_that_are_not_changes_are_counted_and_passed_over() -> None:
    worker = QualityWorker(ExchangeSettings(), "t")  # no network until start()
    worker._by_topic = {"src.e": "e"}
    worker.tallies["e"] = EntryTally(fields=("name",))
    worker._lookup = FakeLookup(  # type: ignore[assignment]
        {
            b"audit": {"kind": "grant.approved", "chain_id": "x"},
            b"string": {"op": "u", "after": "not a record"},
            b"list": [1, 2],
            b"good": {"op": "c", "after": {"name": None}},
            b"delete": {"op": "d", "after": None},
        }
    )
    for i, value in enumerate([b"audit", b"string", b"list", b"good", b"delete"]):
        worker._on_record(Message("src.e", 0, i, b"k", value, (), None, 1_000))
    tally = worker.tallies["e"]
    assert (tally.records, tally.deletes, tally.nulls["name"]) == (1, 1, 1)
    assert worker.undecodable["e"] == 3
