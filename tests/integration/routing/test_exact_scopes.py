"""Issue 20: a row-scoped grant gets exactly its rows, read as its consumer would (a plain
read_committed consumer from offset 0 of every topic it may read), also across a SIGKILL."""

from __future__ import annotations

import time
from typing import Any

import pytest

from exchange.kafka.wire import SchemaLookup
from tests.integration.routing.conftest import RouterEnv, person, plain_committed

COUNTY = "140602"
FIELDS = ["citizen_id", "name", "region_code"]


def _table(env: RouterEnv, consumer: str) -> tuple[dict[bytes, dict[str, Any]], list[Any]]:
    """The consumer's table from offset 0 of its delivery topic, and every message read."""
    lookup: SchemaLookup = env.lookup
    messages = plain_committed(env.settings, env.delivery_topic(consumer))
    table: dict[bytes, dict[str, Any]] = {}
    for m in messages:
        key = m.key()
        value = None if m.value() is None else lookup.decode(m.value())
        if value is None or value["op"] == "d":
            table.pop(key, None)
        else:
            table[key] = value["after"]
    return table, messages


def _expected(rows: dict[str, dict[str, Any]], county_only: bool) -> dict[bytes, dict[str, Any]]:
    return {
        cid.encode(): {f: row[f] for f in FIELDS}
        for cid, row in rows.items()
        if not county_only or row["region_code"].startswith(COUNTY)
    }


@pytest.fixture(scope="module")
def scoped(router_env: RouterEnv) -> RouterEnv:
    env = router_env
    c = env.consumers
    plain = {"citizen_id": "none", "name": "none"}
    env.grant(
        c["county"],
        "g-county",
        fields=FIELDS,
        row_filter={"region_code": {"prefix": COUNTY}},
        masks=plain,
    )
    env.grant(c["mzj"], "g-city", fields=FIELDS, masks=plain)
    return env


def test_a_county_grant_gets_exactly_its_rows_and_nothing_of_other_counties(
    scoped: RouterEnv,
) -> None:
    env = scoped
    county, city = env.consumers["county"], env.consumers["mzj"]
    inside = [person(i, COUNTY) for i in range(4)]
    outside = [person(10 + i, "140603") for i in range(4)]
    rows = {r["citizen_id"]: r for r in inside + outside}
    moved_out = {**inside[0], "region_code": "140603"}
    moved_in = {**outside[0], "region_code": COUNTY}
    renamed = {**inside[1], "name": "王五"}
    rejected = {**person(30, COUNTY), "citizen_id": "140602198001019999"}  # bad check digit
    # The rows first: a router's first start gives each grant the current rows, not history,
    # so the changes below come once it routes.
    env.publish([env.change(r, "c") for r in inside + outside])
    env.start_router()
    env.wait_for("the first rows", lambda: _table(env, city)[0] == _expected(rows, False))
    records = [
        env.change(moved_out),
        env.change(moved_in),
        env.change(renamed),
        env.change(outside[1], "d"),  # another county's delete: not the county's business
        env.change(inside[2]),  # the same row again: nothing anyone sees changed
        env.change(rejected, "c"),  # rejected: never published
        (rejected["citizen_id"], env.change(rejected, "d")[1]),  # its delete: nobody held it
    ]
    env.publish(records)
    rows |= {r["citizen_id"]: r for r in (moved_out, moved_in, renamed)}
    del rows[outside[1]["citizen_id"]]
    env.wait_for("the county's table", lambda: _table(env, county)[0] == _expected(rows, True))
    env.wait_for("the city's table", lambda: _table(env, city)[0] == _expected(rows, False))
    _table_now, messages = _table(env, county)
    seen = {m.key() for m in messages}
    # No key of another county ever reached the county, not even in a delete or tombstone.
    allowed = {r["citizen_id"].encode() for r in [*inside, moved_in]}
    assert seen == allowed
    ops = [
        (m.key(), None if m.value() is None else env.lookup.decode(m.value())["op"])
        for m in messages
    ]
    left = moved_out["citizen_id"].encode()
    assert [op for key, op in ops if key == left] == ["c", "d", None]  # a delete, then a tombstone
    entered = moved_in["citizen_id"].encode()
    assert [op for key, op in ops if key == entered] == ["c"]  # arrives whole, as a create
    again = inside[2]["citizen_id"].encode()
    assert [op for key, op in ops if key == again] == ["c"]  # the repeat was not delivered
    _, city_messages = _table(env, city)
    assert rejected["citizen_id"].encode() not in {m.key() for m in city_messages}


def test_after_a_sigkill_every_table_equals_the_current_rows_its_grant_allows(
    scoped: RouterEnv,
) -> None:
    env = scoped
    county, city = env.consumers["county"], env.consumers["mzj"]
    if env.process is None:
        env.start_router()
    people = [
        person(100 + i, COUNTY if i % 2 else "140603") for i in range(12_000)
    ]  # born before today: valid IDs
    env.publish([env.change(r, "c") for r in people])
    rows = {r["citizen_id"]: r for r in people}
    # Moves both ways, renames and deletes, while the router is killed and restarted.
    for round_ in range(3):
        changes = []
        for i, r in enumerate(people):
            if (i + round_) % 5 == 0:
                # A deleted row comes back: a create for whoever it is in scope of.
                moved = {
                    **rows.get(r["citizen_id"], r),
                    "region_code": "140603" if i % 3 else COUNTY,
                }
                rows[r["citizen_id"]] = moved
                changes.append(env.change(moved))
            elif (i + round_) % 7 == 0 and r["citizen_id"] in rows:
                changes.append(env.change(rows.pop(r["citizen_id"]), "d"))
            elif (i + round_) % 11 == 0 and r["citizen_id"] in rows:
                renamed = {**rows[r["citizen_id"]], "name": f"赵{round_}"}
                rows[r["citizen_id"]] = renamed
                changes.append(env.change(renamed))
        env.publish(changes)
        # Killed while it routes: once it has read its state back (the group gives a new
        # worker the partitions only after the killed one's session ended) and started.
        time.sleep(0.5)
        env.stop_router(kill=True)
        restored = _restored(env)
        env.start_router()
        env.wait_for("the state read back", lambda n=restored: _restored(env) >= n + 2, 120)
    # The first test's rows are in the same tables: compare this test's keys.
    ours = {r["citizen_id"] for r in people}
    env.wait_for(
        "the county's table after SIGKILLs",
        lambda: _mine(_table(env, county)[0], ours) == _expected(rows, True),
        120,
    )
    env.wait_for(
        "the city's table after SIGKILLs",
        lambda: _mine(_table(env, city)[0], ours) == _expected(rows, False),
        120,
    )


def _restored(env: RouterEnv) -> int:
    """How often the router's log says a partition's state was read back."""
    return env.log.read_text(errors="replace").count("per-key state of") if env.log.exists() else 0


def _mine(table: dict[bytes, dict[str, Any]], ours: set[str]) -> dict[bytes, dict[str, Any]]:
    return {k: v for k, v in table.items() if k.decode() in ours}
