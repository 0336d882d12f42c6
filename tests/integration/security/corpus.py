"""Malformed source records, each as a hostile or careless department could publish it to its
own ``src.*`` topic, with the dead-letter reason the router must give it (issue 21's corpus).

Built from one valid record of the entry (the router's strict reading must refuse what lax
readers such as fastavro would take), so every kind is exact about what is broken.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchange.kafka.wire import AvroCodec

#: The reason of a record the broker refuses before the router sees it.
BROKER = "(refused by the broker)"


@dataclass(frozen=True)
class Malformed:
    kind: str
    key: bytes | None
    value: bytes | None
    #: The dead letter's reason, or :data:`BROKER`.
    reason: str


def _varint(n: int) -> bytes:
    """Avro's zig-zag varint of ``n``."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def corpus(
    codec: AvroCodec,
    encode: Callable[..., bytes],
    row: dict[str, Any],
    provider: str,
    foreign_id: int,
) -> list[Malformed]:
    """``encode(row, department=..., op=...)`` writes a change record with ``codec``'s schema id;
    ``foreign_id``: a schema id of another subject with the same shape."""
    good = encode(row)
    key = row["citizen_id"].encode()
    cid = good.index(key)  # the citizen ID's text; its length varint is the byte before it
    name = good.index(row["name"].encode())
    rng = random.Random(21)
    body = good[5:]
    out: list[tuple[str, bytes | None, bytes | None, str]] = [
        # Framing: no Confluent wire header, or a broken one.
        ("empty value", key, b"", "bad_framing"),
        ("one byte", key, b"\x00", "bad_framing"),
        ("header cut short", key, good[:3], "bad_framing"),
        ("magic byte 1", key, b"\x01" + good[1:], "bad_framing"),
        ("magic byte 0xff", key, b"\xff" + good[1:], "bad_framing"),
        ("plain JSON", key, b'{"citizen_id": "x"}', "bad_framing"),
        ("unknown schema id", key, b"\x00" + (999_999).to_bytes(4, "big") + body, "unknown_schema"),
        ("schema id 0", key, b"\x00" + (0).to_bytes(4, "big") + body, "unknown_schema"),
        (
            "another subject's schema id",
            key,
            b"\x00" + foreign_id.to_bytes(4, "big") + body,
            "schema_mismatch",
        ),
        # The Avro body: what lax readers take or choke on.
        ("header only", key, good[:5], "bad_avro"),
        ("cut by one byte", key, good[:-1], "bad_avro"),
        ("cut in half", key, good[: len(good) // 2], "bad_avro"),
        ("one trailing byte", key, good + b"\x00", "bad_avro"),
        ("a hundred trailing bytes", key, good + bytes(100), "bad_avro"),
        ("another record appended", key, good + body, "bad_avro"),
        ("op enum index -1", key, good[:5] + _varint(-1) + good[6:], "bad_avro"),
        ("op enum index 4", key, good[:5] + _varint(4) + good[6:], "bad_avro"),
        ("op enum index 2^40", key, good[:5] + _varint(2**40) + good[6:], "bad_avro"),
        ("after union index -1", key, good[:6] + _varint(-1) + good[7:], "bad_avro"),
        ("after union index 2", key, good[:6] + _varint(2) + good[7:], "bad_avro"),
        ("padded op varint", key, good[:5] + bytes([good[5] | 0x80, 0]) + good[6:], "bad_avro"),
        (
            "string length 2^40",
            key,
            good[: cid - 1] + _varint(2**40) + good[cid:],
            "bad_avro",
        ),
        ("string length -1", key, good[: cid - 1] + _varint(-1) + good[cid:], "bad_avro"),
        (
            "invalid UTF-8 in a string",
            key,
            good[:name] + b"\xff" + good[name + 1 :],
            "bad_avro",
        ),
        ("all 0xff body", key, good[:5] + b"\xff" * len(body), "bad_avro"),
        ("all zero body", key, good[:5] + bytes(len(body)), "bad_avro"),
        (
            "random body",
            key,
            good[:5] + bytes(rng.randrange(256) for _ in range(len(body))),
            "bad_avro",
        ),
        # Valid Avro, refused by the exchange's rules.
        (
            "another department as source",
            key,
            encode(row, department="someone_else"),
            "not_provider",
        ),
        ("empty department", key, encode(row, department=""), "not_provider"),
        ("key of another row", b"110105199001011234", good, "key_mismatch"),
        ("key with a trailing space", key + b" ", good, "key_mismatch"),
        # Source topics are compacted: the broker itself refuses a record without a key.
        ("null key", None, good, BROKER),
        ("null-key tombstone", None, None, BROKER),
        # An upsert with an empty key is one whose key is not the record's.
        ("empty key", b"", good, "key_mismatch"),
        ("tombstone with an empty key", b"", None, "no_key"),
        (
            "citizen ID checksum wrong",
            *_with(encode, row, citizen_id=_bad_check(row)),
            "rule_violation",
        ),
        (
            "citizen ID too short",
            *_with(encode, row, citizen_id=row["citizen_id"][:17]),
            "rule_violation",
        ),
        (
            "citizen ID of letters",
            *_with(encode, row, citizen_id="ABCDEFGHIJKLMNOPQR"),
            "rule_violation",
        ),
        ("required name empty", key, encode({**row, "name": ""}), "rule_violation"),
        ("gender outside its pattern", key, encode({**row, "gender": "x"}), "rule_violation"),
        ("region code of 5 digits", key, encode({**row, "region_code": "14060"}), "rule_violation"),
        (
            "region code with letters",
            key,
            encode({**row, "region_code": "14060A"}),
            "rule_violation",
        ),
        ("phone outside its pattern", key, encode({**row, "phone": "123"}), "rule_violation"),
        (
            "phone with a leading space",
            key,
            encode({**row, "phone": " 13800000000"}),
            "rule_violation",
        ),
    ]
    return [Malformed(*case) for case in out]


def _with(encode: Callable[..., bytes], row: dict[str, Any], **changed: Any) -> tuple[bytes, bytes]:
    """A key and value for ``row`` with fields changed (the key follows the citizen ID)."""
    new = {**row, **changed}
    return new["citizen_id"].encode(), encode(new)


def _bad_check(row: dict[str, Any]) -> str:
    cid = row["citizen_id"]
    last = "0" if cid[-1] != "0" else "1"
    return cid[:-1] + last
