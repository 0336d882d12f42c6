"""The assessment's figures from given grants, objections and scores, and its periods."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from exchange.grants.model import Actor, Decision, Grant, GrantRequest
from exchange.quality.assessment import Period, ScoreRow, assess, parse_period
from exchange.quality.objections import Objection, Step
from exchange.quality.report import as_csv, cells

CST = dt.timezone(dt.timedelta(hours=8))
Q4 = parse_period("2026Q4")


def test_periods_in_china_standard_time() -> None:
    assert Q4.start == dt.datetime(2026, 10, 1, tzinfo=CST)
    assert Q4.end == dt.datetime(2027, 1, 1, tzinfo=CST)
    november = parse_period("2026-11")
    assert (november.label, november.end) == ("2026-11", dt.datetime(2026, 12, 1, tzinfo=CST))
    assert parse_period("2026").end == dt.datetime(2027, 1, 1, tzinfo=CST)
    assert parse_period("2026q1").end == dt.datetime(2026, 4, 1, tzinfo=CST)
    for bad in ("2026Q5", "2026-13", "Q4", "last quarter"):
        with pytest.raises(ValueError, match="2026Q4"):
            parse_period(bad)


def _grant(gid: str, entry: str, asked: dt.datetime, hours: float | None) -> Grant:
    request = GrantRequest(
        consumer="mzj",
        entry=entry,
        fields=("name",),
        purpose="data_verification",
        legal_basis="依据",
        valid_from=asked,
        valid_until=asked + dt.timedelta(days=30),
    )
    decision = (
        None
        if hours is None
        else Decision(by=Actor(department="gongan"), at=asked + dt.timedelta(hours=hours))
    )
    return Grant(
        id=gid,
        request=request,
        state="requested" if decision is None else "approved",
        requested_by=Actor(department="mzj"),
        requested_at=asked,
        decision=decision,
    )


def test_each_department_and_the_ranking(make_objection: Callable[..., Objection]) -> None:
    inside = dt.datetime(2026, 11, 2, 9, tzinfo=CST)
    before = dt.datetime(2026, 9, 30, 9, tzinfo=CST)
    grants = [
        _grant("g1", "gongan.population", inside, 2),
        _grant("g2", "gongan.population", inside, 6),
        _grant("g3", "gongan.population", inside, None),
        _grant("g4", "gongan.population", before, 1),  # another period
        _grant("g5", "rsj.insured", inside, 10),
    ]
    filed = make_objection(history=(Step(state="filed", at=inside, by="mzj/wang"),))
    confirmed = filed.model_copy(
        update={
            "id": "obj-2",
            "state": "confirmed",
            "history": (
                *filed.history,
                Step(state="fixed", at=inside + dt.timedelta(hours=30), by="exchange"),
                Step(state="confirmed", at=inside + dt.timedelta(hours=80), by="mzj/wang"),
            ),
        }
    )
    scores = [
        ScoreRow(inside, None, "gongan", 80.0, {}),
        ScoreRow(inside, None, "gongan", 90.0, {}),
        ScoreRow(inside, "gongan.population", "gongan", 85.0, {"timeliness": 0.5}),
        ScoreRow(before, None, "gongan", 10.0, {}),
        ScoreRow(inside, None, "rsj", 60.0, {}),
    ]
    rows = assess(
        Q4,
        {"gongan": "公安局", "rsj": "人社局", "mzj": "民政局"},
        {"gongan.population": "gongan", "gongan.marriage": "gongan", "rsj.insured": "rsj"},
        {"gongan.population", "rsj.insured"},
        grants,
        [filed, confirmed],
        scores,
        {"gongan.population": 1200, "rsj.insured": 7},
    )
    by = {r.department: r for r in rows}
    g = by["gongan"]
    assert (g.entries, g.with_data, g.collection_rate) == (2, 1, 0.5)
    assert (g.requests, g.decided, g.median_decision_h) == (3, 2, 4.0)
    assert (g.objections, g.resolved, g.median_resolve_h) == (2, 1, 30.0)
    assert (g.quality, g.timeliness, g.shared_records) == (85.0, 0.5, 1200)
    # 30 x 0.5 + 30 x 0.85 + 20 x 0.5 + 10 x 2/3 + 10 x 1/2, over 100
    assert g.points == pytest.approx(62.2, abs=0.05)
    r = by["rsj"]
    assert (r.collection_rate, r.decided, r.objections, r.quality) == (1.0, 1, 0, 60.0)
    assert [x.department for x in rows] == ["rsj", "gongan", "mzj"]
    assert (by["rsj"].rank, by["gongan"].rank, by["mzj"].rank) == (1, 2, None)
    assert by["mzj"].points is None and by["mzj"].collection_rate is None


def test_report_cells_and_csv() -> None:
    [row] = assess(
        Period("X", Q4.start, Q4.end), {"d": "部门"}, {"d.e": "d"}, ["d.e"], [], [], [], {}
    )
    shown = cells(row)
    assert shown[0] == "1" and shown[5] == "100.0%" and "-" in shown
    lines = as_csv([row]).splitlines()
    assert lines[0].startswith("rank,department,name,entries,with_data,collection_rate")
    assert lines[1].startswith("1,d,部门,1,1,1.0,")
