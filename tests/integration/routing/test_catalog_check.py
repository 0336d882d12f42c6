"""The router's catalog check: it re-reads the catalog only when the topic was written, and
adds a route for a new entry without a restart."""

from __future__ import annotations

import json

import pytest

from exchange.catalog.published import PublishedCatalog, read_published
from exchange.config import ExchangeSettings
from exchange.kafka.control import publish, read_table
from exchange.routing.core import Router
from exchange.routing.grants import GrantTable
from exchange.routing.salts import GrantSalts
from tests.integration.routing.conftest import RouterEnv


def test_catalog_check_reads_only_when_written_and_adds_new_routes(
    router_env: RouterEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = router_env.settings
    core = Router(lambda _id: {})  # type: ignore[arg-type]  # no record is decoded here
    table = GrantTable(settings, core, "router.catalog-check", GrantSalts(b"s" * 32))
    reads: list[int] = []

    def counted(settings: ExchangeSettings) -> PublishedCatalog:
        reads.append(1)
        return read_published(settings)

    # A spy around the real read: the check must not read the whole catalog every time.
    monkeypatch.setattr("exchange.routing.grants.read_published", counted)
    assert table.load_catalog()
    topics = set(core.routes)
    assert router_env.project.source_topic in topics
    assert not table.load_catalog()
    assert not table.load_catalog()
    assert reads == [1]
    # The same entry published again: the topic moved, the routes did not.
    entries = read_table(settings.kafka, settings.topics.catalog)
    entry_id, raw = next(iter(entries.items()))
    publish(settings.kafka, settings.topics.catalog, [(entry_id, raw)])
    assert not table.load_catalog()
    assert len(reads) == 2
    # A new entry with a source topic of its own is routed from now on.
    record = json.loads(raw)
    record["entry"]["id"] = f"{entry_id}_copy"
    record["source_topic"] = f"{record['source_topic']}_copy"
    publish(
        settings.kafka,
        settings.topics.catalog,
        [(f"{entry_id}_copy", json.dumps(record).encode())],
    )
    assert table.load_catalog()
    assert set(core.routes) == topics | {record["source_topic"]}
