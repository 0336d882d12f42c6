import copy
import datetime as dt
import io
from typing import Any

import fastavro

from exchange.catalog.model import CatalogEntry
from exchange.grants.model import GrantTerms, Mask, Predicate
from exchange.routing.salts import GrantSalts
from exchange.routing.transform import (
    DeliveryPlan,
    compile_filter,
    delivery_schema,
    mask_value,
)
from tests.unit.grants.fixtures import SCHEMA, entry, grant

#: Salts as the router derives them, from a test secret.
SALTS = GrantSalts(b"test salt secret, 32 bytes long!")

ROW: dict[str, Any] = {
    "citizen_id": "140602199001011234",
    "name": "张三丰",
    "gender": "1",
    "region_code": "140602",
    "phone": None,
}


def test_filters() -> None:
    county = compile_filter([Predicate(field="region_code", op="prefix", values=("140602",))])
    assert county(ROW) and not county({**ROW, "region_code": "140603"})
    assert not county({**ROW, "region_code": None})
    many = compile_filter([Predicate(field="gender", op="in", values=(1, 2))])
    assert many(ROW) and not many({**ROW, "gender": "9"})
    both = compile_filter(
        [
            Predicate(field="region_code", op="eq", values=(140602,)),
            Predicate(field="gender", op="eq", values=("2",)),
        ]
    )
    assert not both(ROW) and both({**ROW, "gender": "2"})
    assert compile_filter([])(ROW)


def test_masks() -> None:
    salt = b"s" * 16
    assert mask_value("140602199001011234", Mask(kind="keep", first=6, last=4), salt) == (
        "140602********1234"
    )
    assert mask_value("张三丰", Mask(kind="keep", first=1, last=1), salt) == "张*丰"
    assert mask_value("张三", Mask(kind="keep", first=1, last=1), salt) == "**"
    assert mask_value(None, Mask(kind="keep"), salt) is None
    assert mask_value("x", Mask(kind="redact"), salt) is None
    hashed = mask_value("x", Mask(kind="hash"), salt)
    assert hashed == mask_value("x", Mask(kind="hash"), salt)
    assert hashed != mask_value("x", Mask(kind="hash"), b"t" * 16)
    assert mask_value(42, Mask(kind="none"), salt) == "42"


def test_projection_keeps_granted_fields_masked_where_required() -> None:
    g = grant(masks={"citizen_id": {"keep": {"first": 6, "last": 4}}})
    plan = _plan(g.terms(), entry())
    assert plan.project(ROW) == {
        "citizen_id": "140602********1234",
        "name": "张*丰",
        "region_code": "140602",
    }


def test_keys_are_hashed_when_the_key_field_is_masked_or_not_granted() -> None:
    masked = _plan(grant().terms(), entry())
    assert masked.hashed_key
    key = masked.key(b"140602199001011234")
    assert key is not None and b"1234" not in key and len(key) == 64
    not_granted = _plan(grant(fields=["region_code"]).terms(), entry())
    assert not_granted.hashed_key
    plain = _plan(grant(masks={"citizen_id": "none"}).terms(), entry())
    assert not plain.hashed_key and plain.key(b"K") == b"K"


def test_delivery_schema_holds_only_granted_fields_all_optional() -> None:
    g = grant(fields=["citizen_id", "birth_date", "region_code"])
    schema = delivery_schema(entry(), SCHEMA, g.terms())
    after = schema["fields"][1]["type"][1]
    assert [f["name"] for f in after["fields"]] == ["citizen_id", "birth_date", "region_code"]
    types = {f["name"]: f["type"] for f in after["fields"]}
    assert types["citizen_id"] == ["null", "string"]
    assert types["birth_date"] == ["null", {"type": "int", "logicalType": "date"}]
    assert all(f["default"] is None for f in after["fields"])
    # It is valid Avro and encodes a projected record.
    parsed = fastavro.parse_schema(copy.deepcopy(schema))
    plan = _plan(g.terms(), entry())
    value = {
        "op": "u",
        "after": plan.project({**ROW, "birth_date": dt.date(1990, 1, 1)}),
        "provider": "gongan",
        "ts_ms": 1,
        "event_id": "e",
        "grant_id": g.id,
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, value)
    out.seek(0)
    back = fastavro.schemaless_reader(out, parsed, parsed)
    assert (
        back["after"]["citizen_id"] == "1*****************4"[:1] + back["after"]["citizen_id"][1:]
    )
    assert back["after"]["birth_date"] == dt.date(1990, 1, 1)


def _plan(terms: GrantTerms, entry: CatalogEntry) -> DeliveryPlan:
    return DeliveryPlan.build(terms, entry, SALTS.salt(terms.id))
