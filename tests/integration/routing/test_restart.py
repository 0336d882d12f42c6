"""The router killed with SIGKILL mid-stream: nothing lost, nothing twice, to the SDK too."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from exchange.client import Change, DeliveryConsumer
from tests.integration.routing.conftest import RouterEnv, person

pytestmark = pytest.mark.integration
COUNT = 3000


def test_sigkill_mid_stream_loses_nothing_and_repeats_nothing(
    router_env: RouterEnv,
) -> None:
    env = router_env
    everyone, county = env.consumers["mzj"], env.consumers["county"]
    env.grant(everyone, "g-all", fields=["citizen_id", "region_code"], masks={"citizen_id": "none"})
    env.grant(
        county,
        "g-county",
        fields=["citizen_id", "name"],
        row_filter={"region_code": {"in": ["140602"]}},
        masks={"citizen_id": "none"},
    )
    rows = [person(i, "140602" if i % 3 == 0 else "140603") for i in range(COUNT)]
    events = {f"ev-{i}": row for i, row in enumerate(rows)}
    env.start_router()

    def publish() -> None:
        for start in range(0, COUNT, 100):
            env.publish(
                [env.change(rows[i], "c", event=f"ev-{i}") for i in range(start, start + 100)]
            )
            time.sleep(0.1)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        env.wait_for("the stream under way", lambda: len(env.deliveries(everyone)) >= 600, 120)
        env.stop_router(kill=True)
    finally:
        publisher.join()
    env.start_router()
    # Event ids as each grant's consumer sees them (keyed per grant).
    wanted = {
        "g-all": {env.token("g-all", "event", e) for e in events},
        "g-county": {
            env.token("g-county", "event", e)
            for e, r in events.items()
            if r["region_code"] == "140602"
        },
    }

    def delivered(consumer: str) -> set[str]:
        return {v["event_id"] for _m, v in env.deliveries(consumer) if v}

    env.wait_for("everything delivered", lambda: delivered(everyone) >= wanted["g-all"], 180)
    env.wait_for("the county's rows", lambda: delivered(county) >= wanted["g-county"], 60)
    # Nothing else reached the county: the filter held across the restart.
    assert delivered(county) == wanted["g-county"]
    raw = Counter(v["event_id"] for _m, v in env.deliveries(everyone) if v)

    # The SDK, stopped half-way and restarted, hands each change over exactly once.
    seen: list[str] = []

    def handle(change: Change[dict[str, Any]]) -> None:
        assert change.grant_id == "g-all" and change.event_id is not None
        seen.append(change.event_id)

    entry = env.project.entry_id
    with DeliveryConsumer[dict[str, Any]](env.settings, everyone, [entry]) as first:
        before = first.run(handle, max_changes=COUNT // 2)
    with DeliveryConsumer[dict[str, Any]](env.settings, everyone, [entry]) as second:
        after = second.run(handle, idle_timeout_s=5)
    assert len(seen) == len(set(seen)) == COUNT
    assert set(seen) == wanted["g-all"]
    assert before.handled + after.handled == COUNT
    assert [e for e, n in raw.items() if n > 1] == [], "a change delivered twice"
