import datetime as dt
import json

from connectors.records import FieldSource, Identity, RowMapper, event_id, source_of
from exchange.catalog.avro import load_schema
from exchange.catalog.keys import record_key
from exchange.catalog.model import CatalogEntry
from tests.conftest import ROOT

SCHEMA = load_schema(ROOT / "schemas/avro/gongan/resident_population.avsc")
ENTRY = CatalogEntry.model_validate(
    {
        "id": "gongan.resident_population",
        "title": "人口",
        "provider": "gongan",
        "schema": "gongan/resident_population.avsc",
        "key": "citizen_id",
        "sharing": "conditional",
        "update_cycle": "daily",
        "fields": {
            "citizen_id": {"rules": ["required", "citizen_id"]},
            "phone": {"rules": [{"pattern": r"^1\d{10}$"}]},
        },
    }
)
COLUMNS = {
    "citizen_id": "身份证号",
    "name": "姓名",
    "gender": "性别",
    "birth_date": "出生日期",
    "region_code": "区划",
    "phone": "电话",
}
MAPPER = RowMapper(
    ENTRY,
    SCHEMA,
    {f: FieldSource(c, {"男": "1"} if f == "gender" else None) for f, c in COLUMNS.items()},
)
GOOD = {
    "身份证号": "11010519491231002X",
    "姓名": "张三",
    "性别": "男",
    "出生日期": "1949年12月31日",
    "区划": "110105",
    "电话": "",
}


def test_a_good_row_becomes_the_entrys_record() -> None:
    record, errors = MAPPER.to_record(GOOD)
    assert errors == []
    assert record == {
        "citizen_id": "11010519491231002X",
        "name": "张三",
        "gender": "1",
        "birth_date": dt.date(1949, 12, 31),
        "ethnicity": None,  # not mapped: null (the schema allows it)
        "address": None,
        "region_code": "110105",
        "phone": None,
    }


def test_every_problem_of_a_row_is_reported_with_its_field_and_reason() -> None:
    row = {
        **GOOD,
        "身份证号": "110105194912310021",
        "姓名": "",
        "出生日期": "1949-02-30",
        "电话": "123",
    }
    record, errors = MAPPER.to_record(row)
    assert record is None
    assert [(e.field, e.code) for e in errors] == [
        ("citizen_id", "citizen_id"),
        ("name", "required"),
        ("birth_date", "unreadable"),
        ("phone", "pattern"),
    ]
    assert "check character" in errors[0].message


def test_key_record_needs_only_the_key() -> None:
    record, errors = MAPPER.key_record({"身份证号": "11010519491231002X"})
    assert errors == [] and record == {"citizen_id": "11010519491231002X"}
    _record, errors = MAPPER.key_record({"身份证号": ""})
    assert [e.code for e in errors] == ["required"]


def test_record_keys() -> None:
    assert record_key(ENTRY, {"citizen_id": "X1"}) == "X1"
    composite = ENTRY.model_copy(update={"key": ("region_code", "citizen_id")})
    assert json.loads(record_key(composite, {"region_code": "1", "citizen_id": "X"})) == ["1", "X"]


def test_event_ids_are_deterministic_and_tell_versions_apart() -> None:
    first = event_id("e", "r", "k", "file:2", b"\x02ab")
    assert first == event_id("e", "r", "k", "file:2", b"\x02ab")
    assert first != event_id("e", "r", "k", "file:3", b"\x02ab")
    assert first != event_id("e", "u", "k", "file:2", b"\x02ab")
    assert first != event_id("e", "r", "k", "file:2", b"\x02ac")  # other content
    assert first != event_id("e", "r", "k2", "file:2", b"\x02ab")
    assert event_id("e", "d", "k", "x", None) != event_id("e", "d", "k", "y", None)
    assert len(first) == 32


def test_source_of_a_change() -> None:
    who = Identity("gongan", "人口系统", "c1")
    assert source_of(who, "f.csv#9") == {
        "department": "gongan",
        "system": "人口系统",
        "connector": "c1",
        "position": "f.csv#9",
    }


def test_unknown_mapped_fields_are_refused() -> None:
    try:
        RowMapper(ENTRY, SCHEMA, {"nope": FieldSource("x")})
    except ValueError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected ValueError")
