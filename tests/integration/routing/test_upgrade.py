"""An exchange upgraded to per-key state: the first router with it rebuilds each partition's
state from the source (``routing/rebuild.py``), so grants get the current rows and later
deletes of keys last changed before the upgrade reach them."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from exchange.kafka.control import partitions, read_all, reader, watermarks
from tests.integration.routing.conftest import RouterEnv, person

pytestmark = pytest.mark.integration
REGION = "140613"


def _route_as_before(env: RouterEnv) -> dict[int, int]:
    """What a router without per-key state leaves: the group's offsets at the end of every
    source partition, and no state changelog. Returns those offsets."""
    topic = env.project.source_topic
    probe = reader(env.settings.kafka)
    ends = {p: watermarks(probe, topic, p, 10)[1] for p in partitions(probe, topic, 10)}
    probe.close()
    group = Consumer(
        {**env.settings.kafka.client_config(), "group.id": env.settings.router.group_id}
    )
    try:
        group.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False
        )
    finally:
        group.close()
    return ends


def _received(env: RouterEnv, consumer: str) -> list[tuple[str, str, str | None]]:
    """``(op, key, name)`` of each delivery (the grant sees citizen IDs unmasked)."""
    return [
        (v["op"], (m.key or b"").decode(), v["after"]["name"] if v["after"] else None)
        for m, v in env.deliveries(consumer)
        if v
    ]


def _router_letters(env: RouterEnv, key: str) -> list[Any]:
    return [
        m
        for m in read_all(env.settings.kafka, env.settings.topics.dlq)
        if b"router" in dict(m.headers).get("exchange.origin", b"") and m.key == key.encode()
    ]


def test_an_upgraded_exchange_rebuilds_its_state_from_the_source(router_env: RouterEnv) -> None:
    env = router_env
    rows = [person(900 + i, REGION) for i in range(30)]
    renamed = [{**r, "name": "李改名"} for r in rows[:5]]
    deleted = rows[5:10]
    forged = person(960, REGION)
    env.publish(
        [env.change(r, "c") for r in rows]
        + [env.change(r) for r in renamed]
        + [env.change(r, "d") for r in deleted]
        + [env.change(forged, "c", department=env.consumers["nogrant"])]
    )
    ends = _route_as_before(env)
    assert sum(ends.values()) == 41
    mzj = env.consumers["mzj"]
    env.grant(mzj, "g-upgraded", masks={"citizen_id": "none", "name": "none"})
    env.start_router()

    current = sorted(("c", r["citizen_id"], r["name"]) for r in [*renamed, *rows[10:]])
    env.wait_for("the current rows", lambda: len(_received(env, mzj)) >= len(current), 120)
    time.sleep(2)  # anything more would have come by now
    # Each live key once, as it is now: no deleted row, no older name, no history.
    assert sorted(_received(env, mzj)) == current
    assert "building it from offset" in env.log.read_text()
    # The rejection below the old router's offsets was set aside then, not a second time now.
    assert _router_letters(env, forged["citizen_id"]) == []

    # Keys last changed before the upgrade are held by the grant: their delete and update
    # reach it (an empty state would have passed the delete over and made the update a create).
    def new_since(before: list[tuple[str, str, str | None]]) -> list[Any]:
        """Deliveries since ``before`` (partitions are read one after another, not in time)."""
        return sorted((Counter(_received(env, mzj)) - Counter(before)).elements())

    before = _received(env, mzj)
    env.publish([env.change(rows[10], "d"), env.change({**rows[11], "name": "王新名"})])
    want = [("d", rows[10]["citizen_id"], None), ("u", rows[11]["citizen_id"], "王新名")]
    env.wait_for("the delete and the update", lambda: len(new_since(before)) >= 2)
    assert new_since(before) == want

    # Restarted, the state is read back from its changelog: no second rebuild, nothing again.
    env.stop_router()
    env.start_router()
    before = _received(env, mzj)
    env.publish([env.change({**rows[12], "name": "赵再改"})])
    env.wait_for("one more update", lambda: len(new_since(before)) >= 1)
    time.sleep(2)
    assert new_since(before) == [("u", rows[12]["citizen_id"], "赵再改")]
    routed = [p for p, end in ends.items() if end > 0]
    assert env.log.read_text().count("building it from offset") == len(routed)
