import datetime as dt
import hashlib
import json

from connectors.records import FieldSource, Identity, RowMapper, event_id, event_ids, source_of
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
    record, errors = MAPPER.key_record(MAPPER.cells({"身份证号": "11010519491231002X"}))
    assert errors == [] and record == {"citizen_id": "11010519491231002X"}
    _record, errors = MAPPER.key_record(MAPPER.cells({"身份证号": ""}))
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


def test_a_batch_maps_like_its_rows_one_by_one() -> None:
    rows = [
        GOOD,
        {**GOOD, "姓名": "", "出生日期": "1949-02-30"},
        {**GOOD, "身份证号": "11010519491231002X", "电话": "13800138000"},
        {**GOOD, "身份证号": "bad", "性别": "女"},
        {**GOOD, "出生日期": "19491231", "电话": "123"},
    ]
    batch = MAPPER.map_batch([MAPPER.cells(r) for r in rows])
    assert batch.rows == len(rows)
    for i, row in enumerate(rows):
        record, errors = MAPPER.to_record(row)
        assert batch.errors.get(i, []) == errors
        if record is not None:
            assert batch.record(i) == record
    assert sorted(batch.errors) == [1, 3, 4]


def test_a_value_that_cannot_be_read_is_not_checked_against_the_rules() -> None:
    raw = ENTRY.model_dump(by_alias=True, mode="json")
    raw["fields"]["birth_date"] = {"rules": ["required"]}
    mapper = RowMapper(
        CatalogEntry.model_validate(raw), SCHEMA, {f: FieldSource(c) for f, c in COLUMNS.items()}
    )
    batch = mapper.map_batch([mapper.cells({**GOOD, "性别": "1", "出生日期": "1949-02-30"})])
    # Unreadable, and so neither "required" (it is not empty) nor anything else.
    assert [(e.field, e.code) for e in batch.errors[0]] == [("birth_date", "unreadable")]


def test_an_empty_batch() -> None:
    batch = MAPPER.map_batch([])
    assert batch.rows == 0 and batch.errors == {}
    assert all(column == [] for column in batch.values.values())


def test_the_event_id_is_sha256_over_its_parts() -> None:
    # Pinned, so that a change of how it is computed cannot pass unnoticed: a file published
    # again after an upgrade must get the same event ids.
    digest = hashlib.sha256()
    for part in ("gongan.resident_population", "r", "11010519491231002X", "d1g:2"):
        digest.update(part.encode("utf-8") + b"\x1f")
    digest.update(b"\x02ab")
    expected = digest.hexdigest()[:32]
    assert event_id(
        "gongan.resident_population", "r", "11010519491231002X", "d1g:2", b"\x02ab"
    ) == (expected)
    assert expected == "b8aa661a3febf3411f975f1dfbf16b11"
    assert event_ids("e", "d", ["k1", "k2"], ["x", "y"], [None, None]) == [
        event_id("e", "d", "k1", "x", None),
        event_id("e", "d", "k2", "y", None),
    ]


def test_a_converter_failing_in_a_way_nobody_foresaw_rejects_only_its_row() -> None:
    mapper = RowMapper(ENTRY, SCHEMA, {f: FieldSource(c) for f, c in COLUMNS.items()})
    (plan,) = [p for p in mapper._plan if p.name == "name"]

    def fragile(raw: object) -> object:
        if raw == "boom":
            raise TypeError("unforeseen")
        return raw

    plan.convert = fragile
    batch = mapper.map_batch([mapper.cells(GOOD), mapper.cells({**GOOD, "姓名": "boom"})])
    assert list(batch.errors) == [1]
    (error,) = batch.errors[1]
    assert (error.field, error.code) == ("name", "unreadable")
    assert error.message == "cannot read 'boom': TypeError unforeseen"
