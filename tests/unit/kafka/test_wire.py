import pytest

from exchange.kafka.wire import AvroCodec, WireFormatError, schema_id_of

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
