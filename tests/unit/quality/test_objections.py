"""The objection's state machine: every step, who may take it, and what it needs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from exchange.quality.objections import (
    Located,
    Objection,
    ObjectionError,
    advance,
    audit_details,
    event_kind,
    fingerprint,
    overdue,
)

MakeObjection = Callable[..., Objection]


def _due(state: str, at: dt.datetime) -> dt.datetime | None:
    return None if state == "confirmed" else at + dt.timedelta(hours=1)


def _step(o: Objection, action: str, side: str, note: str = "", minutes: int = 1) -> Objection:
    at = o.history[-1].at + dt.timedelta(minutes=minutes)
    return advance(o, action, side, f"{side}-person", at, _due, note)  # type: ignore[arg-type]


def test_every_state_in_turn_with_who_and_when(make_objection: MakeObjection) -> None:
    o = make_objection(located=Located(partition=0, offset=5, fingerprint="x", source_key="6b"))
    o = _step(o, "investigate", "provider")
    o = _step(o, "accept", "provider", "核实有误，将更正")
    o = _step(o, "fix", "exchange")
    o = _step(o, "reopen", "consumer", "仍不正确")
    assert (o.state, o.round, o.located) == ("filed", 2, None)
    o = _step(o, "reject", "provider", "经核实登记无误")
    o = _step(o, "confirm", "consumer")
    assert [s.state for s in o.history] == [
        "filed",
        "investigating",
        "accepted",
        "fixed",
        "filed",
        "rejected",
        "confirmed",
    ]
    assert [s.by for s in o.history[1:3]] == ["provider-person", "provider-person"]
    assert o.history[2].note == "核实有误，将更正"
    assert o.due_at is None
    assert o.resolved_at == o.history[-1].at
    assert o.since == o.history[4].at


@pytest.mark.parametrize(
    ("action", "side"),
    [
        ("investigate", "consumer"),
        ("accept", "consumer"),
        ("fix", "provider"),
        ("confirm", "provider"),
        ("reopen", "provider"),
    ],
)
def test_only_the_right_side_acts(make_objection: MakeObjection, action: str, side: str) -> None:
    o = make_objection(state="fixed") if action in ("confirm", "reopen") else make_objection()
    with pytest.raises(ObjectionError) as caught:
        _step(o, action, side, "why")
    assert (caught.value.code, caught.value.refusal) == ("NOT_YOURS", "forbidden")


def test_a_step_from_the_wrong_state_is_a_conflict(make_objection: MakeObjection) -> None:
    with pytest.raises(ObjectionError, match="confirm needs it fixed or rejected") as caught:
        _step(make_objection(), "confirm", "consumer")
    assert caught.value.refusal == "conflict"
    with pytest.raises(ObjectionError, match="is confirmed"):
        _step(make_objection(state="confirmed"), "reopen", "consumer", "again")


@pytest.mark.parametrize("action", ["reject", "reopen"])
def test_rejecting_and_reopening_need_a_reason(make_objection: MakeObjection, action: str) -> None:
    o = make_objection(state="rejected" if action == "reopen" else "filed")
    side = "consumer" if action == "reopen" else "provider"
    with pytest.raises(ObjectionError) as caught:
        _step(o, action, side, "   ")
    assert caught.value.code == "REASON_REQUIRED"


def test_an_unknown_action_is_refused(make_objection: MakeObjection) -> None:
    with pytest.raises(ObjectionError) as caught:
        _step(make_objection(), "close", "provider")
    assert caught.value.refusal == "bad_request"


def test_each_step_sets_its_deadline_and_clears_the_escalation(
    make_objection: MakeObjection,
) -> None:
    o = make_objection()
    o = o.model_copy(update={"escalated_at": o.filed_at + dt.timedelta(days=8)})
    moved = _step(o, "investigate", "provider", minutes=30)
    assert moved.due_at == o.filed_at + dt.timedelta(minutes=30, hours=1)
    assert moved.escalated_at is None


def test_overdue_once_per_step(make_objection: MakeObjection) -> None:
    t0 = make_objection().filed_at
    o = make_objection(due_at=t0 + dt.timedelta(hours=1))
    assert not overdue(o, t0 + dt.timedelta(minutes=59))
    assert overdue(o, t0 + dt.timedelta(hours=1))
    escalated = o.model_copy(update={"escalated_at": t0 + dt.timedelta(hours=1)})
    assert not overdue(escalated, t0 + dt.timedelta(hours=5))
    assert not overdue(o.model_copy(update={"state": "confirmed"}), t0 + dt.timedelta(days=9))


def test_fingerprints_see_only_the_objected_fields() -> None:
    before = {"name": "张三", "address": "A"}
    assert fingerprint(before, ["name"]) == fingerprint({**before, "address": "B"}, ["name"])
    assert fingerprint(before, ["name"]) != fingerprint({**before, "name": "张叁"}, ["name"])
    assert fingerprint(None, ["name"]) == "deleted"


def test_audit_details_carry_the_step_never_values(make_objection: MakeObjection) -> None:
    details = audit_details(make_objection(evidence="户口簿 No. 123"))
    assert details["state"] == "filed" and details["by"] == "mzj/wang"
    assert "evidence" not in details and "key" not in details
    assert event_kind("reopen") == "quality.objection.reopened"


def test_fields_may_not_repeat(make_objection: MakeObjection) -> None:
    with pytest.raises(ValueError, match="twice"):
        make_objection(fields=("name", "name"))
