"""Integration tests run against the real local Kafka broker and schema registry.

The platform is started once per test session (``exchange dev up``; a no-op when it is already
up) and stopped at the end only if this session started it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from exchange.config import ExchangeSettings, load_settings
from exchange.devplatform import LocalPlatform
from tests.conftest import ROOT, Project


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def platform() -> Iterator[ExchangeSettings]:
    settings = load_settings(ROOT / "config" / "exchange.yaml")
    local = LocalPlatform(settings)
    was_running = all(s.state == "running" for s in local.status())
    local.up()
    yield settings
    if not was_running:
        local.down()


def rename_control_topics(exchange_yaml: str, uid: str) -> str:
    """``config/exchange.yaml``'s text with every control topic named for one test alone."""
    for name in (
        "catalog",
        "grants",
        "audit",
        "audit-keys",
        "dlq",
        "connector-offsets",
        "router-backfills",
        "router-state",
        "portal-accounts",
        "portal-tokens",
        "portal-sessions",
        "portal-lockouts",
        "portal-demands",
        "portal-notices",
        "portal-webhooks",
        "objections",
        "quality-measures",
        "quality-scores",
    ):
        exchange_yaml = exchange_yaml.replace(f"exchange.{name}\n", f"exchange.{name}.{uid}\n")
    return exchange_yaml


class IsolatedProject(Project):
    """A one-entry catalog with names no other test uses, on the shared platform."""

    def __init__(self, base: Project) -> None:
        super().__init__(base.root)
        self.uid = "t" + uuid.uuid4().hex[:10]
        self.entry_id = f"{self.uid}.people"
        self.source_topic = f"src.{self.entry_id}"
        self.subject = f"{self.source_topic}-value"
        self.catalog_topic = f"exchange.catalog.{self.uid}"
        for f in (self.config / "catalog").glob("*.yaml"):
            f.unlink()
        text = self.exchange_yaml.read_text(encoding="utf-8")
        text = rename_control_topics(text, self.uid)
        self.exchange_yaml.write_text(text, encoding="utf-8")
        self.write(
            "config/departments.yaml",
            "departments:\n"
            f"  - {{id: {self.uid}, name: 测试部门, level: city, region_code: '140600'}}\n",
        )
        schema = (self.schemas / "gongan" / "resident_population.avsc").read_text(encoding="utf-8")
        self.write(
            f"schemas/avro/{self.uid}/people.avsc",
            schema.replace("gov.shuozhou.gongan", f"test.{self.uid}"),
        )
        self.write(
            f"config/catalog/{self.uid}.yaml",
            f"""entries:
  - id: {self.entry_id}
    title: 测试人口
    provider: {self.uid}
    schema: {self.uid}/people.avsc
    key: citizen_id
    sharing: conditional
    update_cycle: daily
    partitions: 2
    retention: {{days: 7, compaction: true}}
    fields:
      citizen_id: {{sensitivity: sensitive, rules: [required, citizen_id]}}
""",
        )

    def schema_path(self) -> str:
        return f"schemas/avro/{self.uid}/people.avsc"


@pytest.fixture
def isolated(project: Project, platform: ExchangeSettings) -> IsolatedProject:
    return IsolatedProject(project)
