"""The exchange end to end through connector crashes: a connector killed three times in the
middle of a 100,000-row export, the router routing meanwhile, and a department reading with
the SDK: each row reaches it once, no change twice (issue 20)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from exchange.client import Change, DeliveryConsumer
from exchange.kafka.control import read_table
from exchange.routing.report import router_backlog
from samples.generate import write_population_csv
from tests.integration import crashing
from tests.integration.connectors.conftest import POPULATION_FIELDS
from tests.integration.routing.conftest import RouterEnv

pytestmark = pytest.mark.integration
ROWS = 100_000


def connector_file(env: RouterEnv, inbox: Path) -> Path:
    path = env.project.root / "config" / "connectors" / "crash.yaml"
    path.parent.mkdir(exist_ok=True)
    spec = {
        "id": f"{env.uid}-crash",
        "department": env.provider,
        "system": "测试系统",
        "entry": env.project.entry_id,
        "source": {"type": "file", "folder": str(inbox), "settle_s": 0, "mode": "snapshot"},
        "fields": POPULATION_FIELDS,
        "publish": {"checkpoint_interval_s": 0.2, "exactly_once": True},
    }
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def test_a_connector_killed_three_times_repeats_no_change_to_a_consumer(
    router_env: RouterEnv,
) -> None:
    env = router_env
    mzj = env.consumers["mzj"]
    env.grant(mzj, "crash-all", masks={"citizen_id": "none", "name": "none"})
    inbox = env.project.root / "inbox"
    inbox.mkdir()
    rows = write_population_csv(inbox / "big.csv", ROWS)
    conn = connector_file(env, inbox)
    offsets = env.settings.topics.connector_offsets_of(env.provider)

    def saved() -> dict[str, Any] | None:
        raw = read_table(env.settings.kafka, offsets, committed=True).get(f"{env.uid}-crash")
        return None if raw is None else dict(json.loads(raw)["position"])

    env.start_router()
    at = [0]
    for _ in range(3):
        at.append(crashing.kill_mid_file(env.project.exchange_yaml, conn, saved, at[-1], 0.1))
    crashing.run_to_the_end(env.project.exchange_yaml, conn)
    env.wait_for(
        "every row routed",
        lambda: router_backlog(env.settings, env.catalog).unrouted == 0,
        300,
    )

    seen: Counter[str | None] = Counter()
    events: Counter[str | None] = Counter()

    def handle(change: Change[dict[str, Any]]) -> None:
        seen[change.key] += 1
        events[change.event_id] += 1

    with DeliveryConsumer[dict[str, Any]](env.settings, mzj, [env.project.entry_id]) as sdk:
        sdk.run(handle, idle_timeout_s=15)
    assert set(seen) == {r[0] for r in rows}, "a row is missing"
    assert [k for k, n in seen.items() if n > 1] == [], "a row reached the consumer twice"
    assert len(events) == ROWS and max(events.values()) == 1
