"""The portal's objection desk with a fake of its followed topics: who files, what is checked,
what each step writes (the objection and its notices, one audited write)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest

from exchange.config import ExchangeSettings
from exchange.grants.model import Actor, Decision, Grant
from exchange.portal.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TooManyAttemptsError,
)
from exchange.portal.objections import ObjectionDesk
from exchange.portal.state import PortalState
from exchange.quality.objections import Objection
from tests.unit.grants.fixtures import entry, grant
from tests.unit.portal.fixtures import person, system

NOW = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)


class FakeState:
    """What the desk reads of the portal's followed topics."""

    def __init__(self, settings: ExchangeSettings) -> None:
        self.topics = settings.topics
        self.kept: dict[str, Objection] = {}

    def objections(self) -> dict[str, Objection]:
        return dict(self.kept)

    def objection(self, objection_id: str) -> Objection | None:
        return self.kept.get(objection_id)

    def sync(self) -> bool:
        return True


class Desk:
    def __init__(self, **quality: Any) -> None:
        settings = ExchangeSettings(grants={"operators": ("dsj",)}, quality=quality)
        self.state = FakeState(settings)
        self.writes: list[tuple[str, str, dict[str, Any], list[Any]]] = []
        self.desk = ObjectionDesk(
            settings,
            cast(PortalState, self.state),
            self._write,
            lambda e: entry() if e == "gongan.resident_population" else None,
            lambda: NOW,
        )

    def _write(self, kind: str, actor: str, details: dict[str, Any], records: Any) -> None:
        rows = list(records)
        self.writes.append((kind, actor, details, rows))
        for topic, key, value in rows:
            if topic == self.state.topics.objections:
                self.state.kept[key] = value


def approved() -> Grant:
    g = grant()
    return g.model_copy(
        update={"state": "approved", "decision": Decision(by=Actor(department="gongan"), at=NOW)}
    )


def test_a_consumer_files_and_the_provider_is_told() -> None:
    d = Desk()
    o = d.desk.file(system("mzj", "applicant"), approved(), "k1", ["name"], "姓名错误", "档案")
    assert (o.state, o.provider, o.consumer, o.history[0].by) == (
        "filed",
        "gongan",
        "mzj",
        "token:mzj",
    )
    assert o.due_at == dt.datetime(2026, 12, 14, 2, 0, tzinfo=dt.UTC)  # 5 working days
    [(kind, _actor, details, rows)] = d.writes
    assert kind == "quality.objection.filed" and details["state"] == "filed"
    notices = [v for t, _k, v in rows if t == d.state.topics.portal_notices]
    assert [(n.department, n.kind) for n in notices] == [("gongan", "objection_filed")]


def test_what_is_refused_when_filing() -> None:
    d = Desk(max_open_per_grant=1)
    mzj = person("mzj", "applicant")
    with pytest.raises(NotFoundError):  # not its grant: it may not learn it exists
        d.desk.file(person("rsj", "applicant"), approved(), "k", ["name"], "错误")
    with pytest.raises(ForbiddenError, match="applicant or approver"):
        d.desk.file(person("mzj", "viewer"), approved(), "k", ["name"], "错误")
    with pytest.raises(ConflictError, match="never delivered"):
        d.desk.file(mzj, grant(), "k", ["name"], "错误")
    with pytest.raises(BadRequestError, match="phone not delivered"):
        d.desk.file(mzj, approved(), "k", ["phone"], "错误")
    with pytest.raises(BadRequestError, match="problem"):
        d.desk.file(mzj, approved(), "k", ["name"], "")
    d.desk.file(mzj, approved(), "k", ["name"], "错误")
    with pytest.raises(TooManyAttemptsError):
        d.desk.file(mzj, approved(), "k2", ["name"], "错误")


def test_each_side_moves_only_its_own_steps() -> None:
    d = Desk()
    o = d.desk.file(person("mzj", "applicant"), approved(), "k", ["name"], "错误")
    provider = person("gongan", "approver")
    with pytest.raises(ForbiddenError, match="may not act"):
        d.desk.act(person("gongan", "viewer"), o.id, "accept")
    with pytest.raises(ForbiddenError, match="only the provider"):
        d.desk.act(person("mzj", "applicant"), o.id, "accept")
    with pytest.raises(NotFoundError):
        d.desk.act(person("rsj", "approver"), o.id, "investigate")
    with pytest.raises(BadRequestError, match="reason"):
        d.desk.act(provider, o.id, "reject")
    with pytest.raises(ConflictError):
        d.desk.act(person("mzj", "applicant"), o.id, "confirm")
    rejected = d.desk.act(provider, o.id, "reject", "登记无误")
    assert rejected.state == "rejected"
    kind, _a, _d, rows = d.writes[-1]
    assert kind == "quality.objection.rejected"
    told = [v.department for t, _k, v in rows if t == d.state.topics.portal_notices]
    assert told == ["mzj"]
    # The operators watch every objection; the list shows a department only its own.
    assert d.desk.get(person("dsj", "operator"), o.id).id == o.id
    assert d.desk.list(person("rsj", "viewer")) == []
    assert [x.id for x in d.desk.list(person("gongan", "viewer"), "rejected")] == [o.id]
