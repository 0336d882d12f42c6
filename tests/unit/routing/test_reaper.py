"""Topics of ended or changed grant generations are deleted (routing/reaper.py), without Kafka."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from exchange.config.settings import ExchangeSettings
from exchange.grants.model import Actor, Decision, Grant, GrantTerms
from exchange.routing import reaper as reaper_module
from exchange.routing.reaper import Reaper, unwanted
from tests.unit.grants.fixtures import T0, grant

SETTINGS = ExchangeSettings()
NAMES = SETTINGS.topics
NOW = T0 + dt.timedelta(days=1)
ENTRIES = {"gongan.resident_population", "mzj.marriage_registration"}


def approved(grant_id: str = "g1", revision: int = 2, **changes: Any) -> GrantTerms:
    g: Grant = grant(**changes)
    decision = Decision(by=Actor(department="gongan", person="李"), at=T0)
    update = {"state": "approved", "decision": decision, "id": grant_id, "revision": revision}
    return g.model_copy(update=update).terms()


def topic_of(g: GrantTerms) -> str:
    return NAMES.delivery_of(g.consumer, g.entry, g.id, g.generation())


def test_a_generation_topic_names_consumer_entry_grant_and_revision() -> None:
    g = approved()
    assert topic_of(g) == "dlv.mzj.gongan.resident_population.g1.r2"
    assert NAMES.delivery_parts(topic_of(g)) == ("mzj", "gongan.resident_population", "g1", "r2")
    assert NAMES.delivery_parts("dlv.mzj.gongan.resident_population") is None
    assert NAMES.delivery_parts("src.gongan.resident_population") is None


def test_only_topics_of_active_generations_stay() -> None:
    active, other = approved("g1", 3), approved("g2", 2, fields=["citizen_id", "name"])
    topics = [
        topic_of(active),
        topic_of(other),
        "dlv.mzj.gongan.resident_population.g1.r2",  # the grant's earlier generation
        "dlv.mzj.gongan.resident_population",  # the shared topic before generations
        "dlv.mzj.gongan.resident_population.g9.r4",  # a grant revoked meanwhile
    ]
    assert unwanted(topics, [active, other], ENTRIES, NAMES, NOW) == set(topics[2:])


def test_revoked_expired_and_not_yet_valid_grants_keep_no_topic() -> None:
    revoked = dataclasses.replace(approved("g1"), state="revoked")
    expired = approved("g2", valid_until=T0 + dt.timedelta(hours=1))
    future = approved(
        "g3", valid_from=NOW + dt.timedelta(days=1), valid_until=NOW + dt.timedelta(days=9)
    )
    ended = [revoked, expired, future]
    topics = [topic_of(g) for g in ended]
    assert unwanted(topics, ended, ENTRIES, NAMES, NOW) == set(topics)


def test_topics_of_other_deployments_and_other_names_are_left_alone() -> None:
    topics = [
        "dlv.mzj.other.entry.g1.r2",  # an entry this catalog does not have
        "dlv.uid.mzj.gongan.resident_population.g1.r2",  # another prefix's layout
        "exchange.audit",
        "src.gongan.resident_population",
    ]
    assert unwanted(topics, [], ENTRIES, NAMES, NOW) == set()


class FakeAdmin:
    def __init__(self, topics: set[str]) -> None:
        self.topics = topics
        self.deleted: list[str] = []

    def partition_counts(self) -> dict[str, int]:
        return dict.fromkeys(self.topics, 3)

    def delete_topics(self, topics: list[str]) -> None:
        self.deleted += topics
        self.topics -= set(topics)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(reaper_module.time, "monotonic", lambda: now[0])
    return now


def test_a_topic_goes_once_it_stayed_unwanted_for_the_grace(clock: list[float]) -> None:
    old, new = approved("g1", 2), approved("g1", 3)
    admin = FakeAdmin({topic_of(old), topic_of(new)})
    reaper = Reaper(SETTINGS, admin)  # type: ignore[arg-type]
    grants = {"g1": new}
    assert reaper.sweep(0.5, grants, ENTRIES, NOW) == []
    clock[0] += SETTINGS.router.ended_topic_grace_s - 1
    assert reaper.sweep(0.5, grants, ENTRIES, NOW) == []
    clock[0] += 1
    assert reaper.sweep(0.5, grants, ENTRIES, NOW) == [topic_of(old)]
    assert admin.topics == {topic_of(new)}


def test_a_topic_wanted_again_meanwhile_starts_its_grace_over(clock: list[float]) -> None:
    g = approved("g1", 2)
    admin = FakeAdmin({topic_of(g)})
    reaper = Reaper(SETTINGS, admin)  # type: ignore[arg-type]
    reaper.sweep(0.5, {}, ENTRIES, NOW)  # not heard of yet: unwanted from now
    clock[0] += 5
    reaper.sweep(0.5, {"g1": g}, ENTRIES, NOW)  # active after all
    clock[0] += SETTINGS.router.ended_topic_grace_s
    assert reaper.sweep(0.5, {}, ENTRIES, NOW) == []
    assert admin.deleted == []


def test_a_worker_whose_grant_book_is_behind_deletes_nothing(clock: list[float]) -> None:
    admin = FakeAdmin({topic_of(approved("g1", 2))})
    reaper = Reaper(SETTINGS, admin)  # type: ignore[arg-type]
    stale = SETTINGS.router.ended_topic_grace_s
    for _ in range(3):
        assert reaper.sweep(stale, {}, ENTRIES, NOW) == []
        clock[0] += stale
    assert admin.deleted == []
