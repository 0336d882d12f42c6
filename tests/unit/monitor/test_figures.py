import datetime as dt

from exchange.monitor.figures import (
    Snapshot,
    delivery_owner,
    expiring,
    grant_figures,
    group_lags,
    lag,
)
from exchange.monitor.view import status_views
from tests.unit.grants.fixtures import T0, grant
from tests.unit.monitor.fixtures import snapshot

ENDS = {("src.a", 0): 10, ("src.a", 1): 5, ("dlv.mzj.a", 0): 7, ("dlv.mzj.a", 1): 3}


def test_lag_sums_partitions() -> None:
    assert lag(ENDS, {("src.a", 0): 8, ("src.a", 1): 5}, "src.a") == 2
    # A partition never committed is read from the start: all of it is lag.
    assert lag(ENDS, {("src.a", 0): 10}, "src.a") == 5
    # A commit beyond the end (topic recreated) is not negative lag.
    assert lag(ENDS, {("src.a", 0): 50, ("src.a", 1): 5}, "src.a") == 0


def test_group_lags_per_delivery_topic_and_owner() -> None:
    known = {"dlv.mzj.a": ("mzj", "a")}
    groups = {
        "mzj.verify": {("dlv.mzj.a", 0): 7, ("dlv.mzj.a", 1): 1, ("other", 0): 3},
        "swj.reader": {("dlv.swj.scjg.legal_entity", 0): 0},
    }
    ends = {**ENDS, ("dlv.swj.scjg.legal_entity", 0): 4}
    lags = group_lags(groups, ends, "dlv.", known)
    assert [(g.group, g.consumer, g.entry, g.lag) for g in lags] == [
        ("mzj.verify", "mzj", "a", 2),
        ("swj.reader", "swj", "scjg.legal_entity", 4),
    ]
    # Unknown to the grants: the owner comes from the topic's name.
    assert delivery_owner("dlv.x.y.z", "dlv.", {}) == ("x", "y.z")


def test_grant_status_and_expiry() -> None:
    g = grant()
    approved = g.model_copy(update={"state": "approved"})
    now = T0 + dt.timedelta(days=360)
    figures = grant_figures([approved.terms(), g.model_copy(update={"id": "g0"}).terms()], now)
    assert [(f.grant_id, f.status) for f in figures] == [("g0", "requested"), ("g1", "active")]
    assert expiring(figures, now, dt.timedelta(days=7)) == ["g1"]
    assert expiring(figures, T0 + dt.timedelta(days=300), dt.timedelta(days=7)) == []


def test_json_totals_and_audit_state() -> None:
    out = snapshot(30).to_json()
    assert out["totals"] == {
        "source_records": 35,
        "delivered_records": 30,
        "router_lag": 4,
        "consumer_lag": 0,
        "active_grants": 1,
    }
    assert out["dlq"]["records"] == 3
    assert out["audit"]["intact"] is False
    assert out["grants"][0]["valid_until"].startswith("2026-01-04")


def test_status_views_show_rates_and_problems() -> None:
    before = snapshot(10)
    after = snapshot(30)
    after = Snapshot(**{**after.__dict__, "taken_at": T0 + dt.timedelta(seconds=10)})
    views = {v.title: v for v in status_views(after, before)}
    assert views["exchange (per consumer and entry)"].rows[0][3] == "2.0/s"
    assert "ends within 7 days" in str(views["grants"].rows[0][3])
    assert "BROKEN" in str(views["platform"].rows[0][5])
    assert views["problems"].rows == [("cli.x: changed",)]
    first = {v.title: v for v in status_views(before)}
    assert first["exchange (per consumer and entry)"].rows[0][3] == "-"
