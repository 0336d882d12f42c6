"""A catalog entry and requests shared by the grant and routing unit tests."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from exchange.catalog.avro import FieldType, record_fields
from exchange.catalog.model import CatalogEntry
from exchange.grants.model import Actor, Grant, GrantRequest
from exchange.grants.rules import new_grant
from tests.conftest import ROOT

CN = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 1, 1, tzinfo=CN)
SCHEMA: dict[str, Any] = json.loads(
    (ROOT / "schemas/avro/gongan/resident_population.avsc").read_text(encoding="utf-8")
)
FIELDS: dict[str, FieldType] = record_fields(SCHEMA)
DEPARTMENTS = {"gongan", "mzj", "rsj", "dsj", "shuocheng_rsj"}
OPERATORS = {"dsj"}


def entry(sharing: str = "conditional") -> CatalogEntry:
    return CatalogEntry.model_validate(
        {
            "id": "gongan.resident_population",
            "title": "人口基础信息",
            "provider": "gongan",
            "schema": "gongan/resident_population.avsc",
            "key": "citizen_id",
            "sharing": sharing,
            "update_cycle": "daily",
            "fields": {
                "citizen_id": {"sensitivity": "sensitive"},
                "name": {"sensitivity": "sensitive"},
                "phone": {"sensitivity": "sensitive"},
                "region_code": {"sensitivity": "public"},
            },
        }
    )


def request(**changes: Any) -> GrantRequest:
    base: dict[str, Any] = {
        "consumer": "mzj",
        "entry": "gongan.resident_population",
        "fields": ["citizen_id", "name", "region_code"],
        "purpose": "data_verification",
        "purpose_text": "低保资格核查",
        "legal_basis": "《社会救助暂行办法》第十一条",
        "valid_from": T0,
        "valid_until": T0 + dt.timedelta(days=365),
    }
    base.update(changes)
    return GrantRequest.model_validate(base)


def grant(**changes: Any) -> Grant:
    return new_grant("g1", request(**changes), Actor(department="mzj", person="王"), T0)
