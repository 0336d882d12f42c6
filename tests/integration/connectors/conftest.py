"""Connectors against the real broker and registry: an isolated entry with the population
schema and rules, its catalog applied, and helpers to write connector files and read topics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.config import ConnectorConfig, load_connector_config
from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.config import ExchangeSettings
from exchange.kafka.control import Message, read_all, read_table
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from tests.integration.conftest import IsolatedProject

#: The sample population export's columns (samples/generate.py) -> the entry's fields.
POPULATION_FIELDS: dict[str, Any] = {
    "citizen_id": "公民身份号码",
    "name": "姓名",
    "gender": {"column": "性别", "values": {"男": "1", "女": "2"}},
    "birth_date": "出生日期",
    "ethnicity": "民族",
    "address": "户籍地址",
    "region_code": "行政区划代码",
    "phone": "联系电话",
}
_RULES = """    fields:
      citizen_id: {sensitivity: sensitive, rules: [required, citizen_id]}
      name: {sensitivity: sensitive, rules: [required]}
      gender: {rules: [required, {pattern: '^[0129]$'}]}
      region_code: {rules: [required, {pattern: '^\\d{6}$'}]}
      phone: {sensitivity: sensitive, rules: [{pattern: '^1\\d{10}$'}]}
"""


@dataclass
class Change:
    """A change record read back from the source topic."""

    message: Message
    value: dict[str, Any] | None

    @property
    def key(self) -> str:
        return (self.message.key or b"").decode()


class ConnectorEnv:
    def __init__(self, project: IsolatedProject) -> None:
        self.project = project
        self.uid = project.uid
        catalog_file = project.config / "catalog" / f"{project.uid}.yaml"
        text = catalog_file.read_text(encoding="utf-8")
        catalog_file.write_text(text[: text.index("    fields:")] + _RULES, encoding="utf-8")
        self.settings: ExchangeSettings = project.settings()
        apply_catalog(load_catalog(self.settings).require_valid(), self.settings)
        self.inbox = project.root / "inbox"
        self.inbox.mkdir()
        latest = Registry(self.settings.registry).latest(project.subject)
        assert latest is not None
        self.codec = AvroCodec(latest.schema_id, latest.schema)

    def connector_file(
        self,
        source: dict[str, Any],
        fields: dict[str, Any] | None = None,
        name: str = "c.yaml",
        **extra: Any,
    ) -> Path:
        data: dict[str, Any] = {
            "id": f"{self.uid}-conn",
            "department": self.uid,
            "system": "测试系统",
            "entry": self.project.entry_id,
            "source": source,
            "publish": {"checkpoint_interval_s": 0.2},
            **extra,
        }
        if fields is not None:
            data["fields"] = fields
        path = self.project.root / "config" / "connectors" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return path

    def file_config(self, **source: Any) -> ConnectorConfig:
        spec = {"type": "file", "folder": str(self.inbox), "settle_s": 0, **source}
        return load_connector_config(self.connector_file(spec, POPULATION_FIELDS))

    def changes(self, *, committed: bool = True) -> list[Change]:
        """The source topic's records as the router reads them (committed); ``committed=False``
        also gives those of aborted and open transactions."""
        out = []
        topic = self.project.source_topic
        for msg in read_all(self.settings.kafka, topic, committed=committed):
            out.append(Change(msg, None if msg.value is None else self.codec.decode(msg.value)))
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        letters = read_all(self.settings.kafka, self.dlq_topic, committed=True)
        return [json.loads(m.value or b"{}") for m in letters]

    @property
    def dlq_topic(self) -> str:
        return self.settings.topics.dlq

    def saved(self) -> dict[str, Any] | None:
        """The test connector's saved position, as on its department's offsets topic."""
        topic = self.settings.topics.connector_offsets_of(self.uid)
        raw = read_table(self.settings.kafka, topic, committed=True).get(f"{self.uid}-conn")
        return None if raw is None else dict(json.loads(raw)["position"])


@pytest.fixture
def env(isolated: IsolatedProject) -> Iterator[ConnectorEnv]:
    yield ConnectorEnv(isolated)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests.integration.postgres import postgres_server

    with postgres_server() as url:
        yield url
