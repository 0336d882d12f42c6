"""Delivery receipts: one event per consumer per batch, rows read back in either form."""

from __future__ import annotations

import pytest

from exchange.audit.events import GENESIS, AuditEvent, Chain, Happening
from exchange.audit.receipts import MAX_ROWS, RECEIPT, ReceiptRow, receipt_happenings, receipt_rows
from exchange.audit.trail import Query


def row(grant: str, consumer: str, entry: str, partition: int = 0, count: int = 2) -> ReceiptRow:
    return ReceiptRow(
        grant_id=grant,
        consumer=consumer,
        entry=entry,
        source_topic=f"src.{entry}",
        partition=partition,
        first_offset=10,
        last_offset=10 + count - 1,
        count=count,
        delivery_topic=f"dlv.{consumer}.{entry}",
        sha256="ab" * 32,
    )


def sealed(happenings: list[Happening]) -> list[AuditEvent]:
    chain = Chain("router.w1", "sha256", None, 0, GENESIS)
    return [chain.seal(h) for h in happenings]


def test_one_event_per_consumer_holding_its_rows() -> None:
    rows = [
        row("g1", "mzj", "gongan.people"),
        row("g2", "rsj", "gongan.people"),
        row("g3", "mzj", "scjg.firms", partition=1),
    ]
    events = sealed(receipt_happenings(rows, "router.w1", 1000, backfill=False))
    assert [e.consumer for e in events] == ["mzj", "rsj"]
    mzj, rsj = events
    # Several grants and entries: the event's own fields stay empty, the rows say.
    assert (mzj.entry, mzj.grant_id) == (None, None)
    assert receipt_rows(mzj) == [rows[0], rows[2]]
    # One grant: named on the event too, so a query by grant needs no look inside.
    assert (rsj.entry, rsj.grant_id) == ("gongan.people", "g2")
    assert receipt_rows(rsj) == [rows[1]]
    assert mzj.detail()["backfill"] is False


def test_rows_are_split_over_events_beyond_the_limit() -> None:
    rows = [row(f"g{i}", "mzj", f"e{i}") for i in range(MAX_ROWS * 2 + 1)]
    events = sealed(receipt_happenings(rows, "router.w1", 1000, backfill=True))
    assert [len(receipt_rows(e)) for e in events] == [MAX_ROWS, MAX_ROWS, 1]
    assert [r for e in events for r in receipt_rows(e)] == rows


def test_receipts_written_before_rows_existed_are_read_as_one_row() -> None:
    (old,) = sealed(
        [
            Happening(
                kind=RECEIPT,
                actor="router.w1",
                ts_ms=1,
                entry="gongan.people",
                consumer="mzj",
                grant_id="g1",
                details={
                    "source_topic": "src.gongan.people",
                    "partition": 0,
                    "first_offset": 10,
                    "last_offset": 11,
                    "count": 2,
                    "delivery_topic": "dlv.mzj.gongan.people",
                    "sha256": "ab" * 32,
                    "backfill": False,
                },
            )
        ]
    )
    assert receipt_rows(old) == [row("g1", "mzj", "gongan.people")]


def test_other_events_have_no_rows() -> None:
    (event,) = sealed([Happening("grant.approved", "gongan", 1, {}, grant_id="g1")])
    assert receipt_rows(event) == []


@pytest.mark.parametrize(
    ("asked", "found"),
    [
        (Query(grant_id="g3"), True),
        (Query(entry="scjg.firms"), True),
        (Query(grant_id="g2"), False),  # rsj's grant: not in mzj's receipt
        (Query(consumer="rsj"), False),
        (Query(consumer="mzj", grant_id="g1"), True),
        (Query(entry="scjg.firms", grant_id="g1"), False),  # both must hold for one row
    ],
)
def test_queries_look_inside_receipts(asked: Query, found: bool) -> None:
    rows = [row("g1", "mzj", "gongan.people"), row("g3", "mzj", "scjg.firms")]
    (event,) = sealed(receipt_happenings(rows, "router.w1", 1000, backfill=False))
    assert asked.matches(event) is found
