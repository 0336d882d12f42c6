"""Change envelopes written around an ``after`` record encoded on its own.

An envelope (a source change record or a delivery) is a handful of small fields around the
entry's record. fastavro spends about half of an envelope's encoding time on those small fields
and on walking the union; written here by hand they cost little, and the ``after`` record is
encoded once by fastavro with its own schema. Having ``after``'s bytes separately also lets the
connectors hash them for the event id rather than building a text form of the record.

Only the field types envelopes use are written by hand (enum, string, int/long including
timestamp-millis, a nullable one of those, and records of those); :class:`EnvelopeEncoder`
refuses any other shape when it is built, so an envelope schema that grows a new kind of field
fails when its encoder is made, not with wrong bytes. The unit tests compare the bytes with
fastavro's own encoding.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import fastavro

from exchange.errors import ExchangeError

_HEADER = struct.Struct(">bI")
FieldWriter = Callable[[Any], bytes]


class EnvelopeShapeError(ExchangeError):
    """An envelope schema with a field the hand-written encoder does not know."""


class EnvelopeValueError(ExchangeError):
    """A value that does not fit its envelope field (a bug in the caller, not bad input)."""


def long_bytes(n: int) -> bytes:
    """Avro's int/long: zig-zag, then a little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return bytes((z,))
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _checked_long(n: int) -> bytes:
    if n.__class__ is not int or not -(2**63) <= n < 2**63:
        raise ValueError(f"{n!r} is not a 64-bit integer")
    return long_bytes(n)


def string_bytes(value: str) -> bytes:
    data = value.encode("utf-8")
    size = len(data)
    # Most envelope strings are shorter than 64 bytes: their length is one byte.
    return (bytes((size << 1,)) if size < 64 else long_bytes(size)) + data


class EnvelopeEncoder:
    """Encodes envelopes of one registered schema (Confluent framing included).

    ``after`` is a nullable record field (``["null", record]``); every other field is written
    from the mapping passed to :meth:`encode`.
    """

    def __init__(
        self,
        schema_id: int,
        schema: Mapping[str, Any],
        shapes: dict[str, Any] | None = None,
    ) -> None:
        """``shapes``: parsed ``after`` schemas by :func:`record_shape`, and the other fields'
        writers, shared by the encoders that pass the same dict (a router holds one encoder per
        grant, thousands of them)."""
        self._header = _HEADER.pack(0, schema_id)
        fields = schema.get("fields", [])
        # The writers of the other fields are the same for every grant's envelope: shared too
        # (about 1.3 kB of closures and lists per encoder, 13 MB for 10,000 grants).
        envelope_key = "envelope:" + _fields_shape(fields)
        found = None if shapes is None else shapes.get(envelope_key)
        if found is None:
            found = _layout_of(fields)
            if shapes is not None:
                shapes[envelope_key] = found
        self._fields: list[tuple[str, FieldWriter | None]] = found[0]
        #: The fields again with the parts of each record field, for :meth:`encode_rows`.
        self._layout: list[_Part] = found[1]
        after = [_after_record(f["type"]) for f in fields if f["name"] == "after"]
        if not after:
            raise EnvelopeShapeError("the envelope has no 'after' field", code="ENVELOPE_SHAPE")
        key = record_shape(after[0])
        parsed = None if shapes is None else shapes.get(key)
        if parsed is None:
            parsed = fastavro.parse_schema(dict(after[0]))
            if shapes is not None:
                shapes[key] = parsed
        self._after = parsed

    @property
    def header(self) -> bytes:
        """The Confluent framing every envelope starts with (magic byte and schema id)."""
        return self._header

    @property
    def after_schema(self) -> Any:
        """The ``after`` record's schema as fastavro parsed it."""
        return self._after

    def writers(self) -> list[tuple[str, FieldWriter | None]]:
        """The envelope's fields in order with their writers (``None`` for ``after``)."""
        return list(self._fields)

    def encode_after(self, record: Mapping[str, Any]) -> bytes:
        """The Avro bytes of an ``after`` record (its own schema, no framing)."""
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self._after, record)
        return out.getvalue()

    def encode(self, fields: Mapping[str, Any], after: bytes | None) -> bytes:
        """The framed envelope: ``after`` as returned by :meth:`encode_after`, None for null."""
        union = b"\x00" if after is None else b"\x02" + after
        try:
            return self._header + b"".join(
                [union if write is None else write(fields[name]) for name, write in self._fields]
            )
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise EnvelopeValueError(
                f"cannot write the envelope's fields {sorted(fields)}: {exc!r}",
                code="BAD_ENVELOPE_VALUE",
            ) from exc

    def encode_rows(
        self,
        fields: Mapping[str, Any],
        varying: Mapping[str, Sequence[Any]],
        afters: Sequence[bytes | None],
    ) -> list[bytes]:
        """Framed envelopes of a batch of changes, one per item of ``afters``.

        ``varying`` has a column of values for each field that differs between them, by its
        path (``event_id``, ``source.position``); ``fields`` has the others, the same for all,
        written once for the batch.
        """
        columns: list[bytes | list[bytes]] = [self._header]
        try:
            _columns(self._layout, fields, varying, "", afters, columns)
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise EnvelopeValueError(
                f"cannot write the envelope's fields {sorted(fields)} {sorted(varying)}: {exc!r}",
                code="BAD_ENVELOPE_VALUE",
            ) from exc
        merged: list[bytes | list[bytes]] = []
        for column in columns:
            if isinstance(column, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += column
            else:
                merged.append(column)
        return list(
            map(
                b"".join,
                zip(*[repeat(c) if isinstance(c, bytes) else c for c in merged]),  # noqa: B905
            )
        )


class _Part(NamedTuple):
    name: str
    #: None for ``after``.
    write: FieldWriter | None
    #: The parts of a record field (None for other types).
    parts: list[_Part] | None


def _parts(name: str, ftype: Any) -> list[_Part] | None:
    if isinstance(ftype, dict) and ftype.get("type") == "record":
        return [
            _Part(
                f["name"], _writer(f"{name}.{f['name']}", f["type"]), _parts(f["name"], f["type"])
            )
            for f in ftype["fields"]
        ]
    return None


def _columns(
    layout: list[_Part],
    fields: Mapping[str, Any],
    varying: Mapping[str, Sequence[Any]],
    prefix: str,
    afters: Sequence[bytes | None],
    out: list[bytes | list[bytes]],
) -> None:
    for name, write, parts in layout:
        path = prefix + name
        if write is None:
            out.append([b"\x00" if a is None else b"\x02" + a for a in afters])
        elif path in varying:
            column = varying[path]
            if len(column) != len(afters):
                raise ValueError(f"{path} has {len(column)} values for {len(afters)} changes")
            out.append(list(map(write, column)))
        elif parts is not None and any(k.startswith(path + ".") for k in varying):
            _columns(parts, fields[name], varying, path + ".", afters, out)
        else:
            out.append(write(fields[name]))


def record_shape(record: Mapping[str, Any]) -> str:
    """A key for a record schema that leaves out what does not change its encoding.

    Avro's binary encoding of a record is its fields' values in order: the record's own name and
    the docs play no part (fastavro's writer reads neither). Delivery records differ by name
    (consumer and entry) and docs, so grants with the same fields, types and masks can share the
    first one's parsed schema. Everything else (field order, types, nested named types and their
    namespaces, defaults, logical types) is in the key.
    """
    shape = {
        **{k: v for k, v in record.items() if k not in ("doc", "name")},
        "fields": [{k: v for k, v in f.items() if k != "doc"} for f in record.get("fields", [])],
    }
    return json.dumps(shape, sort_keys=True, ensure_ascii=False)


def _fields_shape(fields: Sequence[Mapping[str, Any]]) -> str:
    """What the writers of an envelope's fields (all but ``after``'s record) depend on."""
    return json.dumps(
        [
            {k: v for k, v in f.items() if k != "doc"} if f["name"] != "after" else "after"
            for f in fields
        ],
        sort_keys=True,
        ensure_ascii=False,
    )


def _layout_of(
    fields: Sequence[Mapping[str, Any]],
) -> tuple[list[tuple[str, FieldWriter | None]], list[_Part]]:
    """The envelope's fields with their writers (``None`` for ``after``), and again with the
    parts of each record field."""
    writers: list[tuple[str, FieldWriter | None]] = []
    layout: list[_Part] = []
    for field in fields:
        name = field["name"]
        if name == "after":
            writers.append((name, None))
            layout.append(_Part(name, None, None))
        else:
            writer = _writer(name, field["type"])
            writers.append((name, writer))
            layout.append(_Part(name, writer, _parts(name, field["type"])))
    return writers, layout


def _after_record(ftype: Any) -> Mapping[str, Any]:
    if (
        isinstance(ftype, list)
        and len(ftype) == 2
        and ftype[0] == "null"
        and isinstance(ftype[1], dict)
        and ftype[1].get("type") == "record"
    ):
        return ftype[1]
    raise EnvelopeShapeError(
        f"envelope field 'after' must be ['null', record], not {ftype!r}", code="ENVELOPE_SHAPE"
    )


def _writer(name: str, ftype: Any) -> FieldWriter:
    if isinstance(ftype, list) and len(ftype) == 2 and ftype[0] == "null":
        # An optional field (the way an envelope grows compatibly): null, or the one type.
        write = _writer(name, ftype[1])

        def nullable(value: Any) -> bytes:
            return b"\x00" if value is None else b"\x02" + write(value)

        return nullable
    kind = ftype.get("type") if isinstance(ftype, dict) else ftype
    logical = ftype.get("logicalType") if isinstance(ftype, dict) else None
    if kind == "string" and logical is None:
        return string_bytes
    if kind in ("int", "long") and logical in (None, "timestamp-millis"):
        # The envelope carries its times as epoch milliseconds already (ints).
        return _checked_long
    if kind == "enum":
        index = {symbol: long_bytes(i) for i, symbol in enumerate(ftype["symbols"])}
        return index.__getitem__
    if kind == "record":
        parts = [(f["name"], _writer(f"{name}.{f['name']}", f["type"])) for f in ftype["fields"]]

        def record(value: Mapping[str, Any]) -> bytes:
            return b"".join([write(value[field]) for field, write in parts])

        return record
    raise EnvelopeShapeError(
        f"envelope field {name!r} has type {ftype!r}, which the envelope encoder does not write "
        "(enum, string, int, long, a nullable one of those, and records of those)",
        code="ENVELOPE_SHAPE",
    )
