"""A connector's life: check the config against the platform, then publish until stopped."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from connectors.config import (
    ConnectorConfig,
    FileSourceConfig,
    HttpSourceConfig,
    SqlSourceConfig,
)
from connectors.errors import ConnectorError, SourceError
from connectors.metrics import ConnectorMetrics
from connectors.platform import PublishedEntry, published_entry, saved_position
from connectors.publisher import Publisher
from connectors.records import FieldSource, RowMapper
from connectors.sources.base import Preview, Source
from exchange.catalog.avro import record_fields
from exchange.config import ExchangeSettings
from exchange.metrics import MetricsServer

log = logging.getLogger(__name__)


def make_source(config: ConnectorConfig) -> Source:
    # Imported lazily: each source pulls its own libraries (SQLAlchemy, openpyxl, aiohttp).
    if isinstance(config.source, FileSourceConfig):
        from connectors.sources.files import FileDropSource

        return FileDropSource(config)
    if isinstance(config.source, SqlSourceConfig):
        from connectors.sources.sql import SqlPollingSource

        return SqlPollingSource(config)
    if isinstance(config.source, HttpSourceConfig):
        from connectors.sources.http import HttpPushSource

        return HttpPushSource(config)
    raise AssertionError(f"unknown source {config.source!r}")


@dataclass
class CheckResult:
    target: PublishedEntry
    facts: list[str]
    saved: dict[str, Any] | None
    preview: list[Preview] = field(default_factory=list)


def mapper_for(config: ConnectorConfig, target: PublishedEntry) -> RowMapper:
    """The field mapping; without one (HTTP push), each field is read under its own name."""
    sources = config.field_sources()
    if not sources:
        sources = {name: FieldSource(name) for name in record_fields(target.record_schema)}
    try:
        return RowMapper(target.entry, target.record_schema, sources)
    except ValueError as exc:
        raise ConnectorError(f"{config.where('fields')}: {exc}", code="BAD_MAPPING") from exc


def check(settings: ExchangeSettings, config: ConnectorConfig, limit: int = 5) -> CheckResult:
    """Everything ``run`` would need, without publishing or moving anything."""
    target = published_entry(settings, config)
    mapper = mapper_for(config, target)
    source = make_source(config)
    facts = source.check()
    saved = saved_position(settings, config)
    return CheckResult(target, facts, saved, source.preview(mapper, limit) if limit else [])


class Connector:
    """One running connector: source, publisher, metrics endpoint."""

    def __init__(self, settings: ExchangeSettings, config: ConnectorConfig) -> None:
        self.settings = settings
        self.config = config
        self.target = published_entry(settings, config)
        mapper = mapper_for(config, self.target)  # a bad mapping fails here, before anything runs
        self.source = make_source(config)
        self.source.check()
        self.metrics = ConnectorMetrics(config.id, config.entry)
        interval = getattr(config.source, "poll_interval_s", None)
        if interval is not None:
            self.metrics.poll_interval.set(interval)
        self.publisher = Publisher(settings, config, self.target, self.metrics, mapper)
        self.stop = threading.Event()
        #: Port of /metrics once running (the configured one, or the one picked for port 0).
        self.metrics_port: int | None = None
        self.running = threading.Event()

    def run(self, *, once: bool = False) -> None:
        server = None
        if self.config.metrics.port is not None:
            server = MetricsServer(self.config.metrics.port, self.config.metrics.host)
            self.metrics_port = server.port
            log.info("metrics on http://%s:%d/metrics", self.config.metrics.host, server.port)
        try:
            saved = saved_position(self.settings, self.config)
            log.info(
                "connector %s publishing %s to %s%s",
                self.config.id,
                self.target.entry.id,
                self.target.topic,
                f", resuming from {saved}" if saved else "",
            )
            self.running.set()
            try:
                self.source.run(self.publisher, saved, self.stop, once)
            except SourceError:
                # The source cannot go on (a row it cannot get past): what it handed over before
                # stands, so deliver it and save its position before saying why it stopped.
                self.publisher.settle()
                raise
            self.publisher.settle()
        finally:
            if server is not None:
                server.close()
