"""`catalog apply` against the real broker and registry."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from exchange.catalog.apply import Change, IncompatibleSchemaError, apply_catalog
from exchange.catalog.load import load_catalog
from exchange.cli.main import app
from exchange.config import ExchangeSettings
from exchange.kafka.admin import Admin
from exchange.kafka.control import read_table
from exchange.kafka.errors import RegistryError
from exchange.kafka.registry import Registry
from tests.integration.conftest import IsolatedProject


def apply(project: IsolatedProject) -> list[Change]:
    settings = project.settings()
    return apply_catalog(load_catalog(settings).require_valid(), settings)


def actions(changes: list[Change], kind: str) -> dict[str, str]:
    return {c.name: c.action for c in changes if c.kind == kind}


def test_apply_creates_topics_subjects_and_publishes_the_catalog(isolated: IsolatedProject) -> None:
    changes = apply(isolated)
    settings = isolated.settings()
    assert actions(changes, "topic")[isolated.source_topic] == "create"
    assert actions(changes, "subject") == {isolated.subject: "create"}
    assert actions(changes, "catalog") == {isolated.entry_id: "create"}

    states = Admin(settings.kafka).topic_states(
        [isolated.source_topic, settings.topics.catalog, settings.topics.audit]
    )
    src = states[isolated.source_topic]
    assert src.partitions == 2
    assert src.config["cleanup.policy"] == "compact,delete"
    assert src.config["retention.ms"] == str(7 * 86_400_000)
    assert states[settings.topics.catalog].config["cleanup.policy"] == "compact"
    assert states[settings.topics.audit].config["retention.ms"] == "-1"

    registry = Registry(settings.registry)
    latest = registry.latest(isolated.subject)
    assert latest is not None and latest.version == 1
    assert [f["name"] for f in latest.schema["fields"]] == [
        "op",
        "after",
        "source",
        "ts_ms",
        "event_id",
    ]
    assert registry.compatibility(isolated.subject) == "BACKWARD"

    published = read_table(settings.kafka, isolated.catalog_topic)
    record = json.loads(published[isolated.entry_id])
    assert record["source_topic"] == isolated.source_topic
    assert record["entry"]["fields"]["citizen_id"] == {
        "sensitivity": "sensitive",
        "rules": ["required", "citizen_id"],
    }


def test_second_apply_changes_nothing(isolated: IsolatedProject) -> None:
    apply(isolated)
    again = apply(isolated)
    assert {c.action for c in again} == {"unchanged"}, [c for c in again if c.action != "unchanged"]


def test_incompatible_change_is_refused_naming_the_field(isolated: IsolatedProject) -> None:
    apply(isolated)
    isolated.edit(
        isolated.schema_path(),
        '{"name": "gender", "type": "string"',
        '{"name": "gender", "type": "int"',
    )
    isolated.edit(
        isolated.schema_path(),
        '{"name": "phone", "type": ["null", "string"], "default": null',
        '{"name": "phone", "type": ["null", "string"], "default": null},\n'
        '    {"name": "email", "type": "string"',
    )
    with pytest.raises(IncompatibleSchemaError) as info:
        apply(isolated)
    text = str(info.value)
    assert f"{isolated.entry_id} ({isolated.subject}): after.gender:" in text
    assert "after.email: new field without a default" in text
    assert "nothing was changed" in text
    latest = Registry(isolated.settings().registry).latest(isolated.subject)
    assert latest is not None and latest.version == 1


def test_compatible_change_is_accepted(isolated: IsolatedProject) -> None:
    apply(isolated)
    isolated.edit(
        isolated.schema_path(),
        '{"name": "phone", "type": ["null", "string"], "default": null',
        '{"name": "phone", "type": ["null", "string"], "default": null},\n'
        '    {"name": "email", "type": ["null", "string"], "default": null, "doc": "电子邮箱."',
    )
    changes = apply(isolated)
    assert actions(changes, "subject") == {isolated.subject: "update"}
    assert actions(changes, "catalog") == {isolated.entry_id: "update"}
    settings = isolated.settings()
    latest = Registry(settings.registry).latest(isolated.subject)
    assert latest is not None and latest.version == 2
    record = json.loads(read_table(settings.kafka, isolated.catalog_topic)[isolated.entry_id])
    assert record["record_schema"]["fields"][-1]["name"] == "email"


def test_the_registry_itself_enforces_backward(isolated: IsolatedProject) -> None:
    """Defence in depth: a client that bypasses `catalog apply` is refused by the registry."""
    apply(isolated)
    registry = Registry(isolated.settings().registry)
    latest = registry.latest(isolated.subject)
    assert latest is not None
    schema = json.loads(json.dumps(latest.schema))
    schema["fields"][1]["type"][1]["fields"].append({"name": "extra", "type": "string"})
    with pytest.raises(RegistryError) as info:
        registry.register(isolated.subject, json.dumps(schema))
    assert info.value.http_status == 409


def test_removed_entry_is_withdrawn_from_the_catalog_topic(isolated: IsolatedProject) -> None:
    apply(isolated)
    isolated.write(f"config/catalog/{isolated.uid}.yaml", "entries: []\n")
    settings = isolated.settings()
    changes = apply_catalog(load_catalog(settings).catalog, settings)
    assert actions(changes, "catalog") == {isolated.entry_id: "delete"}
    assert isolated.entry_id not in read_table(settings.kafka, isolated.catalog_topic)


def test_sample_catalog_through_the_cli(platform: ExchangeSettings) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["catalog", "apply"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["catalog", "apply"])
    assert second.exit_code == 0, second.output
    assert "up to date" in second.output
    listed = runner.invoke(app, ["catalog", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("applied") >= 6 and "not applied" not in listed.output


def test_dry_run_changes_nothing(isolated: IsolatedProject) -> None:
    settings = isolated.settings()
    changes = apply_catalog(load_catalog(settings).require_valid(), settings, dry_run=True)
    assert actions(changes, "topic")[isolated.source_topic] == "create"
    assert isolated.source_topic not in Admin(settings.kafka).topic_states([isolated.source_topic])
    assert Registry(settings.registry).latest(isolated.subject) is None
