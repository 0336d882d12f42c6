"""Who is told of what (portal/notices.py), without Kafka."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from exchange.grants.model import Actor, Decision, Grant
from exchange.portal.model import Demand
from exchange.portal.notices import demand_notices, due_notices, grant_notices, sign
from tests.unit.grants.fixtures import T0, entry, grant


def _approved(days: int) -> Grant:
    g = grant(valid_until=T0 + dt.timedelta(days=days))
    return g.model_copy(
        update={
            "state": "approved",
            "decision": Decision(by=Actor(department="gongan"), at=T0),
            "revision": 1,
        }
    )


def test_a_request_tells_the_provider_a_decision_the_consumer_an_end_both() -> None:
    g, e = grant(), entry()
    (filed,) = grant_notices(g, "grant.requested", e, T0)
    assert (filed.department, filed.kind, filed.link) == ("gongan", "request_filed", "/inbox")
    (decided,) = grant_notices(g, "grant.rejected", e, T0)
    assert (decided.department, decided.kind) == ("mzj", "request_decided")
    assert "已驳回" in decided.text
    ended = grant_notices(g, "grant.revoked", e, T0)
    assert sorted(n.department for n in ended) == ["gongan", "mzj"]
    assert grant_notices(g, "delivery.started", e, T0) == []


def test_a_term_ending_within_7_days_and_an_ended_one() -> None:
    e = entry()
    soon = _approved(10)
    assert due_notices(soon, e, T0 + dt.timedelta(days=2)) == []
    expiring = due_notices(soon, e, T0 + dt.timedelta(days=4))
    assert {n.kind for n in expiring} == {"grant_expiring"} and len(expiring) == 2
    ended = due_notices(soon, e, T0 + dt.timedelta(days=11))
    assert {n.kind for n in ended} == {"grant_ended"}
    # The same notice each time it is found due: one key, kept once.
    again = due_notices(soon, e, T0 + dt.timedelta(days=5))
    assert [n.id for n in again] == [n.id for n in expiring]
    assert due_notices(grant(), e, T0) == []  # not approved


def test_a_need_tells_its_holder_then_its_poster() -> None:
    need = Demand(
        id="need-1",
        department="mzj",
        title="婚姻登记",
        purpose="家庭关系核查",
        holder="gongan",
        created_at=T0,
        created_by="mzj/wang",
    )
    (posted,) = demand_notices(need, T0)
    assert (posted.department, posted.kind) == ("gongan", "demand_posted")
    assert demand_notices(need.model_copy(update={"holder": None}), T0) == []
    (answered,) = demand_notices(need.model_copy(update={"state": "declined"}), T0)
    assert (answered.department, answered.kind) == ("mzj", "demand_answered")


def test_the_signature_covers_the_timestamp_and_the_body() -> None:
    expected = hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", b"{}") == f"sha256={expected}"
    assert sign("s3cret", "1700000001", b"{}") != sign("s3cret", "1700000000", b"{}")
