"""The router's catalog check: it re-reads the catalog only when the topic was written, and
reports a change only when the source topics to subscribe to differ."""

from __future__ import annotations

import json

import pytest

from exchange.catalog.published import PublishedCatalog, read_published
from exchange.config import ExchangeSettings
from exchange.kafka.control import publish, read_table
from exchange.routing.service import RouterService
from tests.integration.routing.conftest import RouterEnv


def test_catalog_check_reports_new_source_topics_only(
    router_env: RouterEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = router_env.settings
    service = RouterService(settings, "catalog-check")
    reads: list[int] = []

    def counted(settings: ExchangeSettings) -> PublishedCatalog:
        reads.append(1)
        return read_published(settings)

    # A spy around the real read: the check must not read the whole catalog every time.
    monkeypatch.setattr("exchange.routing.service.read_published", counted)
    try:
        assert not service.catalog_changed()
        assert not service.catalog_changed()
        assert reads == []
        # The same entry published again: the topic moved, the source topics did not.
        table = read_table(settings.kafka, settings.topics.catalog)
        entry_id, raw = next(iter(table.items()))
        publish(settings.kafka, settings.topics.catalog, [(entry_id, raw)])
        assert not service.catalog_changed()
        assert len(reads) == 1
        # A new entry with a source topic of its own.
        record = json.loads(raw)
        record["entry"]["id"] = f"{entry_id}_copy"
        record["source_topic"] = f"{record['source_topic']}_copy"
        publish(
            settings.kafka,
            settings.topics.catalog,
            [(f"{entry_id}_copy", json.dumps(record).encode())],
        )
        assert service.catalog_changed()
    finally:
        service.close()
