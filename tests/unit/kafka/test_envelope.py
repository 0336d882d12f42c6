import datetime as dt
from typing import Any

import pytest

from exchange.catalog.avro import envelope_schema, load_schema
from exchange.kafka.envelope import (
    EnvelopeEncoder,
    EnvelopeShapeError,
    EnvelopeValueError,
    long_bytes,
)
from exchange.kafka.wire import AvroCodec
from tests.conftest import ROOT

RECORD = load_schema(ROOT / "schemas/avro/gongan/resident_population.avsc")
CHANGE = envelope_schema(
    "gongan.resident_population", RECORD, load_schema(ROOT / "schemas/avro/exchange/envelope.avsc")
)
PERSON = {
    "citizen_id": "11010519491231002X",
    "name": "张三",
    "gender": "1",
    "birth_date": dt.date(1949, 12, 31),
    "ethnicity": None,
    "address": "朔州市朔城区北旺庄街道",
    "region_code": "140602",
    "phone": "13800138000",
}


@pytest.mark.parametrize(
    "n", [0, 1, -1, 63, 64, -64, -65, 300, 2**31, 1_700_000_000_123, -(2**63), 2**63 - 1]
)
def test_longs_are_zigzag_varints_as_fastavro_writes_them(n: int) -> None:
    codec = AvroCodec(1, {"type": "record", "name": "L", "fields": [{"name": "n", "type": "long"}]})
    assert long_bytes(n) == codec.encode({"n": n})[5:]


@pytest.mark.parametrize(
    ("op", "after"), [("c", PERSON), ("u", {**PERSON, "phone": None}), ("d", None), ("r", PERSON)]
)
def test_a_change_is_byte_for_byte_what_fastavro_writes(op: str, after: Any) -> None:
    fields: dict[str, Any] = {
        "op": op,
        "source": {"department": "gongan", "system": "人口库", "connector": "c1", "position": "#9"},
        "ts_ms": 1_700_000_000_123,
        "event_id": "e" * 32,
    }
    encoder = EnvelopeEncoder(77, CHANGE)
    codec = AvroCodec(77, CHANGE)
    data = encoder.encode(fields, None if after is None else encoder.encode_after(after))
    assert data == codec.encode({**fields, "after": after})
    decoded = codec.decode(data)
    assert decoded["after"] == after and decoded["source"]["system"] == "人口库"


def test_a_delivery_envelope_too() -> None:
    delivery = {
        "type": "record",
        "name": "D",
        "fields": [
            {"name": "op", "type": {"type": "enum", "name": "Op", "symbols": ["c", "u", "d", "r"]}},
            {"name": "after", "type": ["null", RECORD]},
            {"name": "provider", "type": "string"},
            {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "grant_id", "type": "string"},
        ],
    }
    encoder = EnvelopeEncoder(5, delivery)
    fields = {"op": "u", "provider": "gongan", "ts_ms": 12, "grant_id": "g-1"}
    data = encoder.encode(fields, encoder.encode_after(PERSON))
    assert data == AvroCodec(5, delivery).encode({**fields, "after": PERSON})


def _delivery(name: str, doc: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    record = {"type": "record", "name": name, "doc": doc, "fields": fields}
    return {
        "type": "record",
        "name": name + "Change",
        "fields": [
            {"name": "op", "type": {"type": "enum", "name": "Op", "symbols": ["c", "u", "d", "r"]}},
            {"name": "after", "type": ["null", record]},
        ],
    }


def after_shapes(shapes: dict[str, Any]) -> list[str]:
    return [k for k in shapes if not k.startswith("envelope:")]


def test_records_differing_only_in_name_and_docs_share_one_parsed_schema() -> None:
    fields = [f for f in RECORD["fields"] if f["name"] in ("citizen_id", "name", "birth_date")]
    documented = [{**f, "doc": f"about {f['name']}"} for f in fields]
    shapes: dict[str, Any] = {}
    one = EnvelopeEncoder(1, _delivery("ShuiwuPeople", "for shuiwu", fields), shapes)
    two = EnvelopeEncoder(2, _delivery("MinzhengPeople", "for minzheng", documented), shapes)
    fewer = EnvelopeEncoder(3, _delivery("RenshePeople", "for renshe", fields[:2]), shapes)
    assert len(after_shapes(shapes)) == 2
    # The envelope's other fields are written alike for all three: one set of writers.
    assert one.writers() == two.writers() == fewer.writers()
    assert one._layout is two._layout is fewer._layout
    row = {k: PERSON[k] for k in ("citizen_id", "name", "birth_date")}
    for encoder, schema_id, schema in (
        (one, 1, _delivery("ShuiwuPeople", "for shuiwu", fields)),
        (two, 2, _delivery("MinzhengPeople", "for minzheng", documented)),
    ):
        # Still byte for byte what fastavro writes with the grant's own, named schema.
        assert encoder.encode({"op": "r"}, encoder.encode_after(row)) == AvroCodec(
            schema_id, schema
        ).encode({"op": "r", "after": row})
    short = {"citizen_id": PERSON["citizen_id"], "name": PERSON["name"]}
    assert fewer.encode_after(short) != one.encode_after(row)


def test_a_different_default_or_nested_type_is_a_different_shape() -> None:
    base = [{"name": "a", "type": ["null", "string"], "default": None}]
    nested = {"type": "record", "name": "Record", "fields": [{"name": "x", "type": "int"}]}
    shapes: dict[str, Any] = {}
    EnvelopeEncoder(1, _delivery("One", "", base), shapes)
    EnvelopeEncoder(
        2, _delivery("Two", "", [{**base[0], "type": ["string", "null"], "default": "-"}]), shapes
    )
    # A nested named type called Record, in the delivery record's namespace: parsed as written.
    with_nested = EnvelopeEncoder(
        3, _delivery("Three", "", [{"name": "n", "type": nested}]), shapes
    )
    assert len(after_shapes(shapes)) == 3
    assert with_nested.encode_after({"n": {"x": 1}}) == b"\x02"


@pytest.mark.parametrize(
    ("field", "why"),
    [
        ({"name": "extra", "type": "double"}, "'extra' has type 'double'"),
        ({"name": "tags", "type": {"type": "array", "items": "string"}}, "'tags'"),
        ({"name": "after", "type": RECORD}, "must be ['null', record]"),
    ],
)
def test_an_envelope_of_another_shape_is_refused_when_built(field: Any, why: str) -> None:
    schema = {**CHANGE, "fields": [f for f in CHANGE["fields"] if f["name"] != "after"] + [field]}
    with pytest.raises(EnvelopeShapeError) as caught:
        EnvelopeEncoder(1, schema)
    assert why in str(caught.value) and caught.value.code == "ENVELOPE_SHAPE"


def test_an_envelope_without_after_is_refused() -> None:
    schema = {**CHANGE, "fields": [f for f in CHANGE["fields"] if f["name"] != "after"]}
    with pytest.raises(EnvelopeShapeError, match="no 'after'"):
        EnvelopeEncoder(1, schema)


@pytest.mark.parametrize(
    "position",
    [
        "",
        "a" * 63,
        "a" * 64,
        "a" * 127,
        "a" * 128,
        "户籍" * 11,
        "户籍人口导出" * 8,
        "é" * 40 + "😀",
    ],
)
def test_strings_of_every_length_class(position: str) -> None:
    # 64 bytes and more need a two-byte length; Chinese text counts three bytes a character.
    fields: dict[str, Any] = {
        "op": "r",
        "source": {"department": "d", "system": "s", "connector": "c", "position": position},
        "ts_ms": -5,
        "event_id": position,
    }
    data = EnvelopeEncoder(3, CHANGE).encode(fields, None)
    assert data == AvroCodec(3, CHANGE).encode({**fields, "after": None})


def test_an_optional_field_is_written_as_its_union() -> None:
    schema = {**CHANGE, "fields": [*CHANGE["fields"], {"name": "note", "type": ["null", "string"]}]}
    base: dict[str, Any] = {
        "op": "d",
        "source": {"department": "d", "system": "s", "connector": "c", "position": "p"},
        "ts_ms": 1,
        "event_id": "e",
    }
    for note in (None, "说明"):
        fields = {**base, "note": note}
        encoded = EnvelopeEncoder(3, schema).encode(fields, None)
        assert encoded == AvroCodec(3, schema).encode({**fields, "after": None})


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"op": "x"}, "KeyError"),
        ({"ts_ms": 1.5}, "not a 64-bit integer"),
        ({"ts_ms": 2**64}, "not a 64-bit integer"),
        ({"event_id": None}, "AttributeError"),
        ({"source": {"department": "d"}}, "KeyError"),
    ],
)
def test_a_value_that_does_not_fit_is_named(change: dict[str, Any], why: str) -> None:
    fields: dict[str, Any] = {
        "op": "u",
        "source": {"department": "d", "system": "s", "connector": "c", "position": "p"},
        "ts_ms": 1,
        "event_id": "e",
        **change,
    }
    with pytest.raises(EnvelopeValueError) as caught:
        EnvelopeEncoder(3, CHANGE).encode(fields, None)
    assert why in str(caught.value) and caught.value.code == "BAD_ENVELOPE_VALUE"


def test_a_logical_type_it_does_not_write_is_refused() -> None:
    schema = {
        **CHANGE,
        "fields": [
            *CHANGE["fields"],
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        ],
    }
    with pytest.raises(EnvelopeShapeError, match="'day'"):
        EnvelopeEncoder(1, schema)


def test_a_batch_of_changes_is_byte_for_byte_what_fastavro_writes() -> None:
    encoder = EnvelopeEncoder(77, CHANGE)
    codec = AvroCodec(77, CHANGE)
    afters = [PERSON, None, {**PERSON, "name": "王䶮𠀀" * 30}]
    positions = ["a.csv#2", "a.csv#delete", "a.csv#" + "9" * 70]
    event_ids = ["a" * 32, "b" * 32, "c" * 32]
    source = {"department": "gongan", "system": "人口库", "connector": "c1", "position": ""}
    data = encoder.encode_rows(
        {"op": "u", "source": source, "ts_ms": 1_700_000_000_123},
        {"source.position": positions, "event_id": event_ids},
        [None if a is None else encoder.encode_after(a) for a in afters],
    )
    assert data == [
        codec.encode(
            {
                "op": "u",
                "source": {**source, "position": position},
                "ts_ms": 1_700_000_000_123,
                "event_id": eid,
                "after": after,
            }
        )
        for after, position, eid in zip(afters, positions, event_ids, strict=True)
    ]
    assert (
        encoder.encode_rows({"op": "u", "source": source, "ts_ms": 1}, {"event_id": []}, []) == []
    )


def test_a_batch_with_a_missing_field_or_a_short_column_is_refused() -> None:
    encoder = EnvelopeEncoder(77, CHANGE)
    source = {"department": "gongan", "system": "s", "connector": "c1", "position": "#1"}
    with pytest.raises(EnvelopeValueError):
        encoder.encode_rows({"op": "u", "source": source}, {"event_id": ["e" * 32]}, [b""])
    with pytest.raises(EnvelopeValueError):
        encoder.encode_rows(
            {"op": "u", "source": source, "ts_ms": 1}, {"event_id": ["e", "f"]}, [b""]
        )
