from decimal import Decimal

import pytest

from exchange.kafka.wire import AvroCodec, WireFormatError, encoding_problem, schema_id_of

SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}


def test_round_trip_in_confluent_framing() -> None:
    codec = AvroCodec(42, SCHEMA)
    data = codec.encode({"a": "张三"})
    assert data[:5] == b"\x00\x00\x00\x00\x2a"
    assert schema_id_of(data) == 42
    assert codec.decode(data) == {"a": "张三"}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (None, "TOMBSTONE"),
        (b"\x01abcd", "BAD_FRAMING"),
        (b"\x00", "BAD_FRAMING"),
        (b"\x00\x00\x00\x00\x07x", "SCHEMA_MISMATCH"),
        (b"\x00\x00\x00\x00\x2a\x7f", "BAD_AVRO"),
    ],
)
def test_bad_bytes_are_named(data: bytes | None, code: str) -> None:
    codec = AvroCodec(42, SCHEMA)
    with pytest.raises(WireFormatError) as caught:
        codec.decode(data)  # type: ignore[arg-type]
    assert caught.value.code == code


STRICT = {
    "type": "record",
    "name": "S",
    "fields": [
        {"name": "op", "type": {"type": "enum", "name": "Op", "symbols": ["c", "u", "d"]}},
        {
            "name": "after",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "A",
                    "fields": [{"name": "n", "type": "long"}, {"name": "ok", "type": "boolean"}],
                },
            ],
        },
    ],
}
HEADER = b"\x00\x00\x00\x00\x07"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x01\x02\x00\x00", "enum index -1 (fastavro: the last symbol)"),
        (b"\x02\x01\x00\x00", "union index -1 (fastavro: the last branch)"),
        (b"\x02\x02\x80\x00\x00", "a padded zero (0x80 0x00)"),
        (b"\x02\x02\x00\x02", "a boolean byte of 2"),
    ],
)
def test_strict_decoding_refuses_what_no_writer_makes(body: bytes, why: str) -> None:
    codec = AvroCodec(7, STRICT)
    lax = codec.decode(HEADER + body)  # what a lax reader makes of it
    assert lax["after"] is not None or lax["op"] == "d", why
    with pytest.raises(WireFormatError, match="no Avro writer makes such bytes") as caught:
        codec.decode(HEADER + body, strict=True)
    assert caught.value.code == "BAD_AVRO"


def test_strict_decoding_takes_what_a_writer_wrote() -> None:
    codec = AvroCodec(7, STRICT)
    for record in (
        {"op": "c", "after": {"n": 0, "ok": True}},
        {"op": "u", "after": {"n": -(2**63), "ok": False}},
        {"op": "d", "after": None},
    ):
        assert codec.decode(codec.encode(record), strict=True) == record


def test_trailing_bytes_are_refused_strict_or_not() -> None:
    codec = AvroCodec(7, STRICT)
    data = codec.encode({"op": "d", "after": None}) + b"\x00"
    for strict in (False, True):
        with pytest.raises(WireFormatError, match="after the record's end"):
            codec.decode(data, strict=strict)


RICH = {
    "type": "record",
    "name": "ns.R",
    "fields": [
        {"name": "i", "type": "int"},
        {
            "name": "d",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "m", "type": {"type": "map", "values": "long"}},
        {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["a", "b"]}},
        {"name": "again", "type": ["null", "ns.K"]},
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}},
    ],
}


def _problem(body: bytes) -> str | None:
    return encoding_problem(AvroCodec(1, RICH).parsed, body)


def test_strict_reading_follows_every_type_and_named_reference() -> None:
    codec = AvroCodec(1, RICH)
    record = {
        "i": -5,
        "d": Decimal("-1.28"),
        "tags": ["x", "y"],
        "m": {"k": 3},
        "kind": "b",
        "again": "a",
        "f": b"ab",
    }
    body = codec.encode(record)[5:]
    assert _problem(body) is None
    assert codec.decode(codec.encode(record), strict=True) == record


def test_java_style_decimals_and_size_prefixed_blocks_are_allowed() -> None:
    # -128 cents: Java's BigInteger writes one byte (0x80), fastavro two (0xff 0x80).
    # An array written as one block of -2 items with its size in bytes (allowed by the spec).
    body = (
        b"\x09"  # i = -5
        + b"\x02\x80"  # d: 1 byte
        + b"\x03\x08\x02x\x02y\x00"  # tags: -2 items, 4 bytes, "x", "y", end
        + b"\x00"  # m: empty
        + b"\x02"  # kind = b
        + b"\x02\x00"  # again = a
        + b"ab"
    )
    assert _problem(body) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x80\x80\x80\x80\x20\x00\x00\x00\x00\x00\x00ab", "an int out of its 32-bit range"),
        (b"\x00\x00\x00\x00\x04\x00\x00ab", "enum index 2 of 2"),
        (b"\x00\x00\x00\x00\x00\x04\x00ab", "union index 2 of 2"),
        (b"\x00\x00\x00\x00\x00\x00", "the record ends early"),
        (b"\x00\x00\x00\x00\x00\x00ab!", "1 byte(s) after the record's end"),
        (b"\x00\x01", "a negative length"),
    ],
)
def test_encoding_problems_are_named(body: bytes, problem: str) -> None:
    found = _problem(body)
    assert found is not None and problem in found
