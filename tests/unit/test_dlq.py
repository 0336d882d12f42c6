import json

from exchange.dlq import DeadLetter


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
