import dataclasses

import pytest

from connectors.encoding import (
    ChangeEncoder,
    EncodedBatch,
    EncoderSpec,
    FileBatch,
    Rejected,
    encode_file_batch,
)
from connectors.records import FieldSource, Identity
from exchange.catalog.avro import envelope_schema, load_schema
from exchange.kafka.wire import AvroCodec
from tests.conftest import ROOT
from tests.unit.connectors.test_records import COLUMNS, ENTRY, GOOD, SCHEMA

ENVELOPE = envelope_schema(
    ENTRY.id, SCHEMA, load_schema(ROOT / "schemas/avro/exchange/envelope.avsc")
)
#: What a consumer of the source topic decodes with.
CODEC = AvroCodec(7, ENVELOPE)
ENCODER = ChangeEncoder(
    EncoderSpec(
        ENTRY,
        SCHEMA,
        {f: FieldSource(c, {"男": "1"} if f == "gender" else None) for f, c in COLUMNS.items()},
        7,
        ENVELOPE,
        Identity("gongan", "人口系统", "c1"),
    )
)


def test_a_batch_encodes_fresh_rows_keys_old_ones_and_rejects_bad_ones() -> None:
    bad = {**GOOD, "身份证号": "11010519491231002X", "姓名": ""}
    other = {**GOOD, "身份证号": "110105194912310038"}
    cells = ENCODER.mapper.cells
    batch = FileBatch(
        "p.csv",
        "d1g",
        "r",
        2,
        [
            (2, cells(GOOD)),
            (3, cells(other)),
            (4, cells(bad)),
            (5, "has 1 cells, the header has 6"),
        ],
    )
    encoded = encode_file_batch(ENCODER, batch)
    assert (encoded.rows, encoded.last, encoded.fresh) == (4, 5, 3)
    # Row 2 was published before the resume point: keyed (for delete detection), not encoded.
    assert encoded.keys == [GOOD["身份证号"], other["身份证号"]]
    (fresh,) = encoded.values
    decoded = CODEC.decode(fresh)
    assert decoded["op"] == "r" and decoded["after"]["citizen_id"] == other["身份证号"]
    assert decoded["source"]["position"] == "p.csv#3"
    rejected, malformed = encoded.rejected
    assert rejected.number == 4 and rejected.errors[0].code == "required"
    assert rejected.cells == bad
    assert rejected.key == "11010519491231002X"  # its key is still readable: not a delete
    assert malformed.number == 5 and malformed.key == "" and malformed.cells is None
    assert malformed.errors[0].code == "malformed"


def test_the_event_id_does_not_depend_on_when_a_row_is_encoded() -> None:
    record, _ = ENCODER.mapper.to_record(GOOD)
    a = ENCODER.encode("r", "k", record, "p.csv#3", "d1g:3", 1)
    b = ENCODER.encode("r", "k", record, "p.csv#3", "d1g:3", 2)
    assert a[1] == b[1] and a[0] != b[0]  # ts_ms differs, the event id does not


def test_changes_decode_with_the_registered_schema_and_ids_follow_the_content() -> None:
    record, _ = ENCODER.mapper.to_record(GOOD)
    assert record is not None
    value, eid = ENCODER.encode("u", "k", record, "p.csv#3", "d1g:3", 1_700_000_000_123)
    decoded = CODEC.decode(value)
    assert decoded["after"] == record and decoded["event_id"] == eid
    assert decoded["source"]["connector"] == "c1" and decoded["op"] == "u"
    other, _ = ENCODER.mapper.to_record({**GOOD, "姓名": "李四"})
    assert other is not None
    assert ENCODER.encode("u", "k", other, "p.csv#3", "d1g:3", 1)[1] != eid


def test_a_delete_carries_no_record() -> None:
    record, _ = ENCODER.mapper.to_record(GOOD)
    value, eid = ENCODER.encode("d", "k", record, "p.csv#3", "d1g:3", 5)
    decoded = CODEC.decode(value)
    assert decoded["after"] is None and decoded["op"] == "d"
    assert eid == ENCODER.encode("d", "k", None, "p.csv#3", "d1g:3", 6)[1]


OTHER = {**GOOD, "身份证号": "110105194912310038"}


def _bad_then_good(encoder: ChangeEncoder, bad: dict[str, str]) -> tuple[Rejected, EncodedBatch]:
    """A batch of ``bad`` (row 2) and a good row (3): ``bad`` must be the one rejected."""
    cells = encoder.mapper.cells
    batch = FileBatch("p.csv", "d1g", "r", 0, [(2, cells(bad)), (3, cells(OTHER))])
    encoded = encode_file_batch(encoder, batch)
    (rejected,) = encoded.rejected
    assert rejected.number == 2 and rejected.key == GOOD["身份证号"]
    return rejected, encoded


def test_a_row_whose_value_cannot_be_encoded_is_rejected_and_the_rest_published() -> None:
    # A lone surrogate is text to Python but has no UTF-8 (an XLSX cell or JSON "\ud800").
    broken = {**GOOD, "姓名": "张\ud800"}
    rejected, encoded = _bad_then_good(ENCODER, broken)
    assert [(e.field, e.code) for e in rejected.errors] == [("name", "unencodable")]
    assert rejected.cells == broken  # for its dead letter
    assert encoded.keys == [OTHER["身份证号"]]
    (value,) = encoded.values
    assert CODEC.decode(value)["source"]["position"] == "p.csv#3"


def test_a_row_too_large_for_kafka_is_rejected_and_the_rest_published() -> None:
    spec = dataclasses.replace(ENCODER.spec, max_bytes=2000)
    encoder = ChangeEncoder(spec)
    big = {**GOOD, "姓名": "张" * 600}  # 1,800 bytes of UTF-8
    rejected, encoded = _bad_then_good(encoder, big)
    ((field, code, message),) = [(e.field, e.code, e.message) for e in rejected.errors]
    assert (field, code) == (None, "too_large")
    assert "more than the 1,744 Kafka takes here" in message and "2,000" in message
    assert [CODEC.decode(v)["after"]["citizen_id"] for v in encoded.values] == [OTHER["身份证号"]]


def test_a_key_or_id_with_no_utf8_cannot_be_encoded() -> None:
    from exchange.kafka.columns import ColumnValueError

    with pytest.raises(ColumnValueError, match="not UTF-8"):
        ENCODER.encode("d", "k\ud800", None, "http:r#0", "", 1)
    with pytest.raises(ColumnValueError, match="not UTF-8"):
        ENCODER.encode("d", "k", None, "http:r#0", "id:\ud800", 1)


def test_a_batch_wholly_before_the_resume_point_is_keyed_only() -> None:
    batch = FileBatch("p.csv", "d1g", "r", 10, [(2, ENCODER.mapper.cells(GOOD))])
    encoded = encode_file_batch(ENCODER, batch)
    assert (encoded.fresh, encoded.values, encoded.keys) == (0, [], [GOOD["身份证号"]])
