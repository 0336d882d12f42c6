"""Avro records encoded a column at a time.

A connector maps a batch of source rows field by field (:meth:`connectors.records.RowMapper.
map_batch`), so the values arrive as columns. Encoding them the same way costs one tight loop per
field instead of a dict and a walk of the schema per record: the commonest field types (string,
int, long, boolean, float, double, date, and a nullable one of those) are written here by hand;
any other field is written by fastavro on its own, and a schema whose fields cannot be written
one by one (a named type used by a later field) is written by fastavro whole. Either way the
bytes are fastavro's: the unit tests compare them on random records of every supported type.

The values are what the connectors' converters produce (``str``, ``int``, ``float``, ``bool``,
``datetime.date``, ...), checked there; a value that still cannot be written raises
:class:`ColumnValueError`, and the caller encodes that batch row by row to find the row.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastavro

from exchange.errors import ExchangeError
from exchange.kafka.envelope import long_bytes

#: Writes one column of values: one ``bytes`` per value.
ColumnWriter = Callable[[Sequence[Any]], list[bytes]]
_DAYS_TO_1970 = 719163  # date(1970, 1, 1).toordinal()
_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
#: Length prefixes of strings shorter than 64 bytes (one varint byte each).
_SHORT = [bytes((n << 1,)) for n in range(64)]


class ColumnValueError(ExchangeError):
    """A value that does not fit its field's Avro type."""

    def __init__(self, message: str, *, code: str, field: str | None = None) -> None:
        super().__init__(message, code=code)
        #: The field, when the record was encoded field by field.
        self.field = field


_VALUE_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, UnicodeError, struct.error)


class RecordColumnsEncoder:
    """Encodes records of one Avro record schema from columns of values."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.fields: list[str] = [f["name"] for f in schema.get("fields", [])]
        self._whole: Any = None
        try:
            self._writers: list[ColumnWriter] = [
                _column_writer(f["name"], f["type"]) for f in schema.get("fields", [])
            ]
        except _NotByFieldError:
            self._writers = []
            self._whole = fastavro.parse_schema(dict(schema))

    def encode(self, columns: Mapping[str, Sequence[Any]], rows: int) -> list[bytes]:
        """The Avro bytes of each of ``rows`` records; ``columns`` holds every field's values."""
        if self._whole is not None:
            try:
                return _fastavro_rows(self._whole, self.fields, columns, rows)
            except _VALUE_ERRORS as exc:
                raise ColumnValueError(f"cannot encode: {exc}", code="BAD_VALUE") from exc
        parts = []
        for name, write in zip(self.fields, self._writers, strict=True):
            try:
                parts.append(write(columns[name]))
            except _VALUE_ERRORS as exc:
                raise ColumnValueError(
                    f"cannot encode {name}: {exc}", code="BAD_VALUE", field=name
                ) from exc
        if not parts:
            return [b""] * rows
        return list(map(b"".join, zip(*parts, strict=True)))


class _NotByFieldError(Exception):
    """A field that cannot be written on its own (it uses a named type defined elsewhere)."""


def _column_writer(name: str, ftype: Any) -> ColumnWriter:
    if isinstance(ftype, list):
        return _union_writer(name, ftype)
    plain = _plain_writer(ftype)
    if plain is not None:
        return plain
    return _fastavro_writer(name, ftype)


def _union_writer(name: str, branches: list[Any]) -> ColumnWriter:
    others = [b for b in branches if b != "null"]
    if len(branches) != 2 or len(others) != 1:
        return _fastavro_writer(name, branches)
    write = _plain_writer(others[0])
    if write is None:
        return _fastavro_writer(name, branches)
    null_first = branches[0] == "null"
    null_tag, value_tag = (b"\x00", b"\x02") if null_first else (b"\x02", b"\x00")

    def nullable(values: Sequence[Any]) -> list[bytes]:
        if None not in values:
            return [value_tag + b for b in write(values)]
        present = write([v for v in values if v is not None])
        it = iter(present)
        return [null_tag if v is None else value_tag + next(it) for v in values]

    return nullable


def _plain_writer(ftype: Any) -> ColumnWriter | None:
    """A hand-written writer of a non-union type, or None if there is none for it."""
    kind = ftype.get("type") if isinstance(ftype, dict) else ftype
    logical = ftype.get("logicalType") if isinstance(ftype, dict) else None
    if logical is None:
        return _PLAIN.get(str(kind))
    if logical == "date" and kind == "int":
        return _dates
    return None


def _strings(values: Sequence[Any]) -> list[bytes]:
    out = []
    short = _SHORT
    for value in values:
        data = value.encode("utf-8")
        size = len(data)
        out.append((short[size] if size < 64 else long_bytes(size)) + data)
    return out


def _ints(lo: int, hi: int) -> ColumnWriter:
    def ints(values: Sequence[Any]) -> list[bytes]:
        for value in values:
            if value.__class__ is not int or not lo <= value <= hi:
                raise ValueError(f"{value!r} is not an integer from {lo} to {hi}")
        return list(map(long_bytes, values))

    return ints


def _booleans(values: Sequence[Any]) -> list[bytes]:
    for value in values:
        if value.__class__ is not bool:
            raise TypeError(f"{value!r} is not a boolean")
    return [b"\x01" if v else b"\x00" for v in values]


def _doubles(values: Sequence[Any]) -> list[bytes]:
    return list(map(_DOUBLE, values))


def _floats(values: Sequence[Any]) -> list[bytes]:
    return list(map(_FLOAT, values))


def _dates(values: Sequence[Any]) -> list[bytes]:
    return [long_bytes(v.toordinal() - _DAYS_TO_1970) for v in values]


_PLAIN: dict[str, ColumnWriter] = {
    "string": _strings,
    "int": _ints(-(2**31), 2**31 - 1),
    "long": _ints(-(2**63), 2**63 - 1),
    "boolean": _booleans,
    "double": _doubles,
    "float": _floats,
}


def _fastavro_writer(name: str, ftype: Any) -> ColumnWriter:
    """fastavro writing one field's values, as a record of that one field (its bytes are the
    value's bytes)."""
    try:
        parsed = fastavro.parse_schema(
            {"type": "record", "name": "_Column", "fields": [{"name": name, "type": ftype}]}
        )
    except Exception as exc:  # fastavro raises several types for a name it does not know
        raise _NotByFieldError(name) from exc

    def write(values: Sequence[Any]) -> list[bytes]:
        out = []
        buffer = io.BytesIO()
        for value in values:
            buffer.seek(0)
            buffer.truncate()
            fastavro.schemaless_writer(buffer, parsed, {name: value})
            out.append(buffer.getvalue())
        return out

    return write


def _fastavro_rows(
    parsed: Any, fields: list[str], columns: Mapping[str, Sequence[Any]], rows: int
) -> list[bytes]:
    out = []
    buffer = io.BytesIO()
    for i in range(rows):
        buffer.seek(0)
        buffer.truncate()
        fastavro.schemaless_writer(buffer, parsed, {f: columns[f][i] for f in fields})
        out.append(buffer.getvalue())
    return out
