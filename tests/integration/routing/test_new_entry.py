"""A catalog entry applied while the router runs is routed without a restart: the pattern
subscription finds its topic, the router holds it until the catalog names it, then routes it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.grants.model import Actor, GrantRequest
from exchange.grants.store import GrantStore
from exchange.kafka.control import publish
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from tests.integration.routing.conftest import CN, RouterEnv, change_value, person

pytestmark = pytest.mark.integration


def test_an_entry_applied_while_the_router_runs_is_routed(router_env: RouterEnv) -> None:
    env = router_env
    env.start_router()
    env.wait_for("the router to start", lambda: "assigned" in env.log.read_text(), 60)
    entry_id = f"{env.uid}.more_people"
    catalog_file = env.project.root / "config" / "catalog" / f"{env.uid}.yaml"
    text = catalog_file.read_text(encoding="utf-8")
    first = text[text.index("  - id:") :]
    catalog_file.write_text(
        text + first.replace(f"id: {env.project.entry_id}", f"id: {entry_id}"), encoding="utf-8"
    )
    catalog = load_catalog(env.settings).require_valid()
    apply_catalog(catalog, env.settings)
    consumer = env.consumers["fresh"]
    now = dt.datetime.now(CN)
    request = GrantRequest.model_validate(
        {
            "consumer": consumer,
            "entry": entry_id,
            "fields": ["citizen_id", "region_code"],
            "purpose": "data_verification",
            "legal_basis": "测试依据",
            "valid_from": now - dt.timedelta(minutes=1),
            "valid_until": now + dt.timedelta(days=1),
            "masks": {"citizen_id": "none"},
        }
    )
    requester = GrantStore(env.settings, catalog, Actor(department=consumer, person="测试"))
    requester.request(request, grant_id="g-more")
    requester.close()
    approver = GrantStore(env.settings, catalog, Actor(department=env.provider, person="测试"))
    approver.approve("g-more", "测试批准")
    approver.close()
    topic = f"src.{entry_id}"
    latest = Registry(env.settings.registry).latest(f"{topic}-value")
    assert latest is not None
    codec = AvroCodec(latest.schema_id, latest.schema)
    rows: list[dict[str, Any]] = [person(700 + i, "140602") for i in range(20)]
    publish(
        env.settings.kafka,
        topic,
        [(r["citizen_id"], change_value(codec, r, env.provider, "c")) for r in rows],
    )

    def delivered() -> int:
        return len(env.deliveries_of(consumer, entry_id))

    env.wait_for("the new entry's records delivered", lambda: delivered() >= len(rows), 120)
    assert delivered() == len(rows)
    assert env.process is not None and env.process.poll() is None
    env.stop_router()
