"""Measures and the score, from a tally: each part as docs/quality.md gives it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from exchange.catalog.model import ConsistencyCheck
from exchange.quality.checks import CheckBook
from exchange.quality.measures import (
    CheckResult,
    EntryTally,
    ObjectionFigures,
    department_scores,
    measure,
    objection_figures,
    score,
)
from exchange.quality.objections import Objection, Step

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
NONE = ObjectionFigures(open=0, waiting=0, resolved=0, median_resolve_s=None)


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


def test_completeness_validity_and_timeliness() -> None:
    tally = EntryTally(fields=("name", "phone"))
    for i in range(4):
        tally.add({"name": "张三", "phone": None if i < 3 else "138"}, _ms(NOW) - 3_600_000)
    tally.add(None, _ms(NOW) - 7_200_000)
    tally.reject("invalid_row", "connector")
    tally.reject("undecodable", "router")
    m = measure("e", "d", "daily", tally, NONE, (), NOW)
    assert m.null_share == {"name": 0.0, "phone": 0.75}
    assert m.parts["completeness"] == pytest.approx(1 - 0.375)
    # offered: 4 records, 1 delete, 1 row the connector refused; 2 rejected in all
    assert m.parts["validity"] == pytest.approx(1 - 2 / 6)
    assert (m.age_s, m.late, m.parts["timeliness"]) == (3600.0, False, 1.0)
    assert m.rejected == {"invalid_row": 1, "undecodable": 1}


def test_an_entry_is_late_after_its_cycle_times_the_factor() -> None:
    tally = EntryTally(fields=("name",))
    tally.add({"name": "x"}, _ms(NOW - dt.timedelta(days=3)))
    m = measure("e", "d", "daily", tally, NONE, (), NOW, late_factor=1.5)
    assert m.late and m.parts["timeliness"] == pytest.approx(1.5 / 3)
    on_time = measure("e", "d", "weekly", tally, NONE, (), NOW)
    assert not on_time.late
    # An entry that changes when the world does is never late; one without data always is.
    assert not measure("e", "d", "on_change", tally, NONE, (), NOW).late
    empty = measure("e", "d", "daily", EntryTally(fields=("name",)), NONE, (), NOW)
    assert empty.late and empty.parts == {"timeliness": 0.0, "objections": 1.0}


def test_the_score_is_the_weighted_mean_of_the_parts_that_apply() -> None:
    assert score({"completeness": 1.0, "validity": 0.5}) == 75.0
    assert score({"timeliness": 0.0, "objections": 1.0}) == pytest.approx(100 * 10 / 30, abs=0.1)
    assert score({"validity": 0.5}, {"validity": 2.0, "completeness": 9.0}) == 50.0
    assert score({}) == 0.0


def test_objections_waiting_lower_the_score_and_time_to_resolve_is_the_median(
    make_objection: Callable[..., Objection],
) -> None:
    base = make_objection()
    t0 = base.filed_at

    def settled(hours: int, confirmed: bool = True) -> Objection:
        at = t0 + dt.timedelta(hours=hours)
        steps = [Step(state="rejected", at=at, by="gongan/li", note="登记无误")]
        if confirmed:
            steps.append(Step(state="confirmed", at=at + dt.timedelta(days=9), by="mzj/wang"))
        state = "confirmed" if confirmed else "rejected"
        return base.model_copy(update={"state": state, "history": (*base.history, *steps)})

    # Settled by the provider counts from filing to its answer, whenever the consumer confirms
    # (or never does).
    figures = objection_figures([settled(2), settled(4), settled(30, confirmed=False), base])
    assert figures == ObjectionFigures(open=2, waiting=1, resolved=3, median_resolve_s=4 * 3600)
    m = measure("e", "d", "on_change", EntryTally(fields=()), figures, (), NOW)
    assert m.parts["objections"] == 0.5


def test_consistency_counts_failing_records() -> None:
    checks = [CheckResult("a", checked=10, failing=1), CheckResult("b", checked=10, failing=3)]
    m = measure("e", "d", "on_change", EntryTally(fields=()), NONE, checks, NOW)
    assert m.parts["consistency"] == pytest.approx(0.8)
    assert m.public()["checks"][0]["samples"] == []


def test_a_department_scores_the_mean_of_its_entries() -> None:
    tally = EntryTally(fields=())
    a = measure("a", "d1", "on_change", tally, NONE, (), NOW)
    b = measure("b", "d1", "daily", tally, NONE, (), NOW)
    assert department_scores([a, b]) == {"d1": round((a.score + b.score) / 2, 1)}


def test_check_book_follows_current_values() -> None:
    check = ConsistencyCheck(id="in_people", field="citizen_id", exists_in="people")
    book = CheckBook([("insured", check)])
    for k in ("1", "2", "3"):
        book.update("people", k.encode(), {"citizen_id": k})
    for k in ("1", "2", "9", "8"):
        book.update("insured", f"i{k}".encode(), {"citizen_id": k})
    book.update("insured", b"i8", None)  # deleted: no longer checked
    book.update("people", b"2", None)  # its person left the population
    book.update("insured", b"i1", {"citizen_id": "3"})  # corrected to a known person
    [result] = book.results()["insured"]
    assert (result.checked, result.failing, set(result.samples)) == (3, 2, {"2", "9"})
    assert book.reads("people") and not book.reads("other")
