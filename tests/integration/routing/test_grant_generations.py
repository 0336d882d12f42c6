"""Issue 20: nothing left after a grant changes or ends, read as the consumer would (a plain
read_committed consumer from offset 0 of every delivery topic it can read, and the SDK).

Each revision of an active grant delivers to a topic of its own; the router deletes a
generation's topic once it ended (revoked, expired) or was replaced (narrowed, widened)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from exchange.client import DeliveryConsumer
from exchange.grants.model import GrantRequest
from exchange.routing import report
from tests.integration.routing.conftest import CN, RouterEnv, person, plain_committed

COUNTY = "140602"
#: The issue's bound: within 30 s of the change nothing outside the new terms is readable.
LIMIT_S = 30


def readable(env: RouterEnv, consumer: str) -> dict[str, list[tuple[bytes, dict[str, Any] | None]]]:
    """Per delivery topic the consumer can read now: its records from offset 0, decoded."""
    out = {}
    for topic in env.delivery_topics(consumer):
        out[topic] = [
            (m.key(), None if m.value() is None else env.lookup.decode(m.value()))
            for m in plain_committed(env.settings, topic)
        ]
    return out


def table(records: list[tuple[bytes, dict[str, Any] | None]]) -> dict[bytes, dict[str, Any]]:
    current: dict[bytes, dict[str, Any]] = {}
    for key, value in records:
        if value is None or value["op"] == "d":
            current.pop(key, None)
        else:
            current[key] = value["after"]
    return current


def mine(
    got: dict[bytes, dict[str, Any]], rows: dict[str, dict[str, Any]]
) -> dict[bytes, dict[str, Any]]:
    """The table's rows of this test's keys (the tests share one source topic)."""
    return {k: v for k, v in got.items() if k.decode() in rows}


def expected(
    rows: dict[str, dict[str, Any]], fields: list[str], county_only: bool
) -> dict[bytes, dict[str, Any]]:
    return {
        cid.encode(): {f: row[f] for f in fields}
        for cid, row in rows.items()
        if not county_only or row["region_code"].startswith(COUNTY)
    }


def amend(env: RouterEnv, grant_id: str, **terms: Any) -> None:
    """New terms for the grant, approved by the provider (a new revision: a new generation)."""
    store = env.store(env.provider)
    grant = store.get(grant_id)
    now = grant.request.model_dump()
    fields = terms.get("fields", now["fields"])
    masks = {f: m for f, m in now["masks"].items() if f in fields}
    request = GrantRequest.model_validate({**now, "masks": masks, **terms})
    store.amend(grant, request, "测试修改")
    store.approve(grant_id, "测试批准")
    store.close()


def wait_gone(env: RouterEnv, consumer: str, keep: set[str], since: float) -> float:
    """Seconds from ``since`` until only ``keep`` are left of the consumer's delivery topics."""
    env.wait_for(
        f"only {sorted(keep)} left", lambda: set(env.delivery_topics(consumer)) == keep, LIMIT_S
    )
    return time.monotonic() - since


@pytest.fixture(scope="module")
def generations(router_env: RouterEnv) -> RouterEnv:
    env = router_env
    env.start_router()
    return env


def test_revoking_one_of_two_grants_leaves_nothing_of_it_readable(generations: RouterEnv) -> None:
    env = generations
    mzj = env.consumers["mzj"]
    rows = {r["citizen_id"]: r for r in (person(i, COUNTY) for i in range(20))}
    env.grant(mzj, "g-wide", masks={"citizen_id": "none", "name": "none"})
    wide = env.delivery_topic(mzj)
    env.grant(mzj, "g-narrow", fields=["citizen_id", "region_code"], masks={"citizen_id": "none"})
    narrow = env.delivery_topic(mzj)
    env.publish([env.change(r, "c") for r in rows.values()])
    env.wait_for(
        "both tables",
        lambda: {t: len(table(r)) for t, r in readable(env, mzj).items()} == {wide: 20, narrow: 20},
    )
    store = env.store(env.provider)
    store.revoke("g-wide", "测试撤销")
    store.close()
    took = wait_gone(env, mzj, {narrow}, time.monotonic())
    assert took < LIMIT_S
    # Not a name anywhere the consumer can read, from offset 0 of every topic.
    left = readable(env, mzj)
    assert set(left) == {narrow}
    assert table(left[narrow]) == expected(rows, ["citizen_id", "region_code"], False)
    assert all(v is None or "name" not in (v["after"] or {}) for _k, v in left[narrow])
    # `exchange readable` (what operators and the demo show) says the same.
    (shown,) = report.readable(env.settings, mzj, env.project.entry_id)
    assert shown.topic == narrow and len(shown.rows) == 20 and not shown.undecodable
    assert {f for row in shown.rows.values() for f in row} == {"citizen_id", "region_code"}


def test_narrowing_redelivers_the_current_rows_under_the_new_terms_and_widening_backfills(
    generations: RouterEnv,
) -> None:
    env = generations
    county = env.consumers["county"]
    people = [person(100 + i, COUNTY if i % 2 else "140603") for i in range(40)]
    rows = {r["citizen_id"]: r for r in people}
    fields = ["citizen_id", "name", "region_code"]
    env.grant(county, "g-county", masks={"citizen_id": "none", "name": "none"})
    first = env.delivery_topic(county)
    renamed = {**people[1], "name": "孙八"}
    env.publish(
        [env.change(r, "c") for r in people] + [env.change(renamed), env.change(people[3], "d")]
    )
    rows[renamed["citizen_id"]] = renamed
    del rows[people[3]["citizen_id"]]
    env.wait_for(
        "the first generation's table",
        lambda: (
            mine(table(readable(env, county).get(first, [])), rows) == expected(rows, fields, False)
        ),
    )
    # Narrowed: no name, the county only. The router is killed right after, and restarted.
    since = time.monotonic()
    amend(
        env,
        "g-county",
        fields=["citizen_id", "region_code"],
        row_filter={"region_code": {"prefix": COUNTY}},
    )
    env.stop_router(kill=True)
    env.start_router()
    second = env.settings.topics.delivery_of(county, env.project.entry_id, "g-county", "r4")
    took = wait_gone(env, county, {second}, since)
    narrowed = expected(rows, ["citizen_id", "region_code"], True)
    env.wait_for(
        "the narrowed table",
        lambda: mine(table(readable(env, county)[second]), rows) == narrowed,
        120,
    )
    got = readable(env, county)
    assert set(got) == {second} and took < LIMIT_S + 20  # 20: the restart's session timeout
    # Never a key of the other county, not even a delete (the first test's rows are COUNTY's).
    earlier = {person(i, COUNTY)["citizen_id"].encode() for i in range(20)}
    assert {k for k, _v in got[second]} == set(narrowed) | earlier
    assert all(
        v is None or set(v["after"] or {}) <= {"citizen_id", "region_code"} for _k, v in got[second]
    )
    # Widened again: every row, with names: the new generation is backfilled with them.
    amend(
        env,
        "g-county",
        fields=fields,
        row_filter=[],
        masks={"citizen_id": "none", "name": "none"},
    )
    third = env.settings.topics.delivery_of(county, env.project.entry_id, "g-county", "r6")
    wait_gone(env, county, {third}, time.monotonic())
    env.wait_for(
        "the widened table",
        lambda: mine(table(readable(env, county)[third]), rows) == expected(rows, fields, False),
        120,
    )


def test_an_expired_grant_leaves_no_topic(generations: RouterEnv) -> None:
    env = generations
    ops = env.consumers["ops"]
    until = dt.datetime.now(CN) + dt.timedelta(seconds=8)
    env.grant(ops, "g-expiring", fields=["citizen_id", "region_code"], valid_until=until)
    topic = env.delivery_topic(ops)
    env.wait_for("its topic", lambda: env.delivery_topics(ops) == [topic])
    time.sleep(max(0.0, (until - dt.datetime.now(CN)).total_seconds()))
    took = wait_gone(env, ops, set(), time.monotonic())
    assert took < LIMIT_S


def test_the_sdk_follows_a_grant_into_its_new_generation(generations: RouterEnv) -> None:
    env = generations
    fresh = env.consumers["fresh"]
    rows = [person(300 + i, COUNTY) for i in range(10)]
    env.grant(fresh, "g-sdk", masks={"citizen_id": "none", "name": "none"})
    old = env.delivery_topic(fresh)
    env.publish([env.change(r, "c") for r in rows])
    new = env.settings.topics.delivery_of(fresh, env.project.entry_id, "g-sdk", "r4")
    consumer: DeliveryConsumer[dict[str, Any]] = DeliveryConsumer(
        env.settings, fresh, [env.project.entry_id], group_id=f"{fresh}.sdk"
    )
    seen: list[tuple[str, str, str | None, dict[str, Any] | None]] = []

    def handle(c: Any) -> None:
        seen.append((c.topic, c.op, c.key, c.value))

    def read_until(topic: str) -> bool:
        consumer.run(handle, idle_timeout_s=3)
        keys = {k for t, _op, k, _v in seen if t == topic}
        return {r["citizen_id"] for r in rows} <= keys

    try:
        env.wait_for("the first generation through the SDK", lambda: read_until(old), 60)
        amend(env, "g-sdk", fields=["citizen_id", "region_code"])
        # Nothing to do for its user: the same consumer reads the new generation's rows.
        env.wait_for("the new generation through the SDK", lambda: read_until(new), 60)
    finally:
        consumer.close()
    assert {t for t, _op, _k, _v in seen} == {old, new}
    again = [(op, v) for t, op, _k, v in seen if t == new]
    assert all(
        op == "c" and v is not None and set(v) == {"citizen_id", "region_code"} for op, v in again
    )
    # Each current row once (a table per generation): as many as the old one held.
    current: set[str | None] = set()
    for t, op, k, _v in seen:
        if t == old:
            (current.discard if op == "d" else current.add)(k)
    assert len(again) == len({k for t, _op, k, _v in seen if t == new}) == len(current)
