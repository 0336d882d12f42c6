"""Records encoded from columns must be byte for byte what fastavro writes."""

from __future__ import annotations

import datetime as dt
import io
import random
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from exchange.kafka.columns import ColumnValueError, RecordColumnsEncoder

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "s_null_first", "type": ["null", "string"]},
        {"name": "s_null_last", "type": ["string", "null"]},
        {"name": "i", "type": "int"},
        {"name": "l", "type": ["null", "long"]},
        {"name": "b", "type": ["null", "boolean"]},
        {"name": "f", "type": "float"},
        {"name": "d", "type": ["null", "double"]},
        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}]},
        # Written by fastavro one field at a time:
        {
            "name": "amount",
            "type": [
                "null",
                {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
            ],
        },
        {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        {"name": "either", "type": ["null", "string", "long"]},
    ],
}
CST = dt.timezone(dt.timedelta(hours=8))


def _text(rng: random.Random) -> str:
    alphabet = "abcXYZ019 -_公民身份号码王䶮𠀀\u00e9"
    # Around the one-byte length limit (63 / 64 bytes) and well past it.
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 21, 22, 63, 64, 200])))


def _record(rng: random.Random) -> dict[str, Any]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.25 else value

    return {
        "s": _text(rng),
        "s_null_first": maybe(_text(rng)),
        "s_null_last": maybe(_text(rng)),
        "i": rng.choice([0, -1, 1, 63, 64, -65, 2**31 - 1, -(2**31), rng.randint(-999, 999)]),
        "l": maybe(rng.choice([2**63 - 1, -(2**63), 0, rng.randint(-(2**40), 2**40)])),
        "b": maybe(rng.random() < 0.5),
        "f": rng.choice([0.0, 1.5, -2.25, 3.4e38]),
        "d": maybe(rng.uniform(-1e12, 1e12)),
        "day": maybe(dt.date(1900, 1, 1) + dt.timedelta(days=rng.randint(0, 80_000))),
        "amount": maybe(Decimal(rng.randint(-(10**11), 10**11)).scaleb(-2)),
        "at": maybe(dt.datetime(2021, 7, 27, 8, 30, rng.randint(0, 59), 123000, tzinfo=CST)),
        "either": maybe(rng.choice([_text(rng), rng.randint(-5, 5)])),
    }


def _fastavro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def _columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in records] for name in records[0]}


def test_random_records_encode_as_fastavro_does() -> None:
    rng = random.Random(20261124)
    records = [_record(rng) for _ in range(3000)]
    encoded = RecordColumnsEncoder(SCHEMA).encode(_columns(records), len(records))
    for record, ours in zip(records, encoded, strict=True):
        assert ours == _fastavro(SCHEMA, record), record


def test_a_column_without_nulls_and_one_of_only_nulls() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": ["null", "string"]},
            {"name": "b", "type": ["null", "int"]},
        ],
    }
    records = [{"a": "x", "b": None}, {"a": "yy", "b": None}]
    encoded = RecordColumnsEncoder(schema).encode(_columns(records), 2)
    assert encoded == [_fastavro(schema, r) for r in records]


def test_a_schema_whose_fields_share_a_named_type_is_written_whole() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"]}},
            {"name": "b", "type": ["null", "Level"]},
            {"name": "c", "type": "string"},
        ],
    }
    records = [{"a": "HIGH", "b": None, "c": "甲"}, {"a": "LOW", "b": "HIGH", "c": ""}]
    encoded = RecordColumnsEncoder(schema).encode(_columns(records), 2)
    assert encoded == [_fastavro(schema, r) for r in records]


def test_no_fields_and_no_rows() -> None:
    empty = {"type": "record", "name": "E", "fields": []}
    assert RecordColumnsEncoder(empty).encode({}, 3) == [b"", b"", b""]
    assert RecordColumnsEncoder(SCHEMA).encode({f["name"]: [] for f in SCHEMA["fields"]}, 0) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("i", 2**31),  # past int's range
        ("l", 2**63),
        ("i", True),  # a bool is not an int here
        ("b", 1),
        ("s", "\ud800"),  # a lone surrogate has no UTF-8
        ("day", "2021-07-27"),
    ],
)
def test_a_value_that_does_not_fit_names_its_field(field: str, value: Any) -> None:
    record = _record(random.Random(1))
    record[field] = value
    with pytest.raises(ColumnValueError) as caught:
        RecordColumnsEncoder(SCHEMA).encode(_columns([record]), 1)
    assert caught.value.field == field and caught.value.code == "BAD_VALUE"
