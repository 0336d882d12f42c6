import base64
import json

from exchange.dlq import MAX_LETTER_BYTES, DeadLetter


def test_a_dead_letter_keeps_text_that_has_no_utf8() -> None:
    # A lone surrogate (an XLSX cell, JSON "\ud800") is why such a row was rejected: its dead
    # letter must still be written. It is written as the JSON escape, valid UTF-8 that a JSON
    # reader turns back into the same text.
    letter = DeadLetter(
        origin="connector",
        reason="unencodable",
        errors=[{"field": "name", "code": "unencodable", "message": "no UTF-8"}],
        entry="gongan.resident_population",
        department="gongan",
        position="p.xlsx#2",
        data={"姓名": "张\ud800"},
    )
    raw = letter.encode()
    assert b"\\ud800" in raw
    raw.decode("utf-8")  # valid UTF-8
    decoded = json.loads(raw)
    assert decoded["data"] == {"姓名": "张\ud800"}
    assert decoded["reason"] == "unencodable"


def _letter(data: dict[str, object] | bytes, message: str = "too large") -> DeadLetter:
    return DeadLetter(
        origin="connector",
        reason="too_large",
        errors=[{"field": None, "code": "too_large", "message": message}],
        entry="gongan.resident_population",
        department="gongan",
        position="p.csv#7",
        data=data,
    )


def test_a_letter_that_fits_is_written_whole() -> None:
    data = {"地址": "x" * 200_000, "姓名": "张三"}
    decoded = json.loads(_letter(data).encode())
    assert decoded["data"] == data and "truncated" not in decoded


def test_a_letter_too_large_for_kafka_keeps_its_reasons_and_a_cut_copy() -> None:
    raw = _letter({"地址": "址" * 400_000, "姓名": "张三"}).encode()
    assert len(raw) <= MAX_LETTER_BYTES
    decoded = json.loads(raw)
    assert decoded["truncated"] is True and decoded["reason"] == "too_large"
    assert decoded["errors"][0]["message"] == "too large"
    assert decoded["data"]["姓名"] == "张三"
    address = decoded["data"]["地址"]
    assert address.startswith("址" * 2000) and address.endswith("[cut: 400,000 characters in all]")


def test_bytes_and_many_long_cells_are_cut_or_left_out() -> None:
    raw = json.loads(_letter(b"\x00" * 2_000_000).encode())
    assert raw["truncated"] is True and raw["data"]["size"] == 2_000_000
    assert len(base64.b64decode(raw["data"]["base64"])) == 6000
    many = {f"c{i}": "y" * 5000 for i in range(1000)}
    raw = json.loads(_letter(many, message="m" * 500_000).encode())
    assert raw["data"] == {"omitted": raw["data"]["omitted"]} and "bytes of JSON" in str(
        raw["data"]
    )
    assert raw["errors"][0]["message"].endswith("[cut: 500,000 characters in all]")
