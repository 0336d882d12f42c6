"""A saved source position is resumed from only if it is the connector's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.config import ConnectorConfig
from connectors.errors import ConnectorError
from connectors.platform import position_from

TOPIC = "exchange.connector-offsets.rsj"


@pytest.fixture
def config(tmp_path: Path) -> ConnectorConfig:
    return ConnectorConfig.model_validate(
        {
            "id": "rsj-social-insurance",
            "department": "rsj",
            "system": "社保系统",
            "entry": "rsj.social_insurance",
            "source": {"type": "http", "tokens_file": "t.yaml"},
            "base_dir": tmp_path,
        }
    )


def record(**changes: Any) -> bytes:
    value = {
        "connector": "rsj-social-insurance",
        "department": "rsj",
        "entry": "rsj.social_insurance",
        "position": {"id": 42},
        "saved_at_ms": 1,
        **changes,
    }
    return json.dumps(value).encode()


def test_the_connectors_own_position_is_resumed_from(config: ConnectorConfig) -> None:
    assert position_from(record(), config, TOPIC) == {"id": 42}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"connector": "scjg-legal-entities"}, "connector 'scjg-legal-entities'"),
        ({"department": "scjg"}, "department 'scjg'"),
        ({"entry": "scjg.legal_entities"}, "entry 'scjg.legal_entities'"),
        ({"department": None}, "department None"),
    ],
)
def test_a_position_written_by_anyone_else_is_refused_loudly(
    config: ConnectorConfig, changes: dict[str, Any], named: str
) -> None:
    forged = record(position={"id": 999999, "updated": "2099-01-01 00:00:00"}, **changes)
    with pytest.raises(ConnectorError, match="refused: saved position") as info:
        position_from(forged, config, TOPIC)
    assert info.value.code == "FORGED_POSITION"
    assert named in str(info.value) and TOPIC in str(info.value)


def test_an_unreadable_position_names_the_topic(config: ConnectorConfig) -> None:
    with pytest.raises(ConnectorError, match=f"on {TOPIC} is not JSON") as info:
        position_from(b"{", config, TOPIC)
    assert info.value.code == "BAD_OFFSET_RECORD"
