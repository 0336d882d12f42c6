"""Confluent's wire format: a zero byte, the 4-byte big-endian schema id, then Avro binary.

Written by hand rather than through ``AvroSerializer``: the codec is five bytes of framing, and
the serializer's per-record registry lookups and dict conversions cost more than the encoding.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable
from typing import Any

import fastavro

from exchange.errors import ExchangeError
from exchange.kafka.errors import RegistryError

MAGIC = 0
#: How long a schema id the registry did not have is not asked for again.
MISSING_TTL_S = 60.0
_HEADER = struct.Struct(">bI")


class WireFormatError(ExchangeError):
    """Bytes that are not a Confluent-framed Avro record of the expected schema."""


class AvroCodec:
    """Encodes and decodes records of one registered schema."""

    def __init__(self, schema_id: int, schema: dict[str, Any]) -> None:
        # Only the parsed form is kept: a router decodes records of 1,000 entries' schemas.
        self.schema_id = schema_id
        self._parsed = fastavro.parse_schema(schema)
        self._header = _HEADER.pack(MAGIC, schema_id)
        #: Named types of the schema, for strict reads (:func:`encoding_problem`).
        self._names: dict[str, Any] | None = None

    @property
    def parsed(self) -> Any:
        """The schema as fastavro parsed it."""
        return self._parsed

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self._parsed, record)
        return out.getvalue()

    def decode(self, data: bytes, strict: bool = False) -> dict[str, Any]:
        """The record in ``data``; ``strict``: only if no part of ``data`` is read differently
        by different Avro readers (:func:`encoding_problem`)."""
        schema_id = schema_id_of(data)
        if schema_id != self.schema_id:
            raise WireFormatError(
                f"record written with schema id {schema_id}, expected {self.schema_id}",
                code="SCHEMA_MISMATCH",
            )
        body = io.BytesIO(data[_HEADER.size :])
        try:
            record = fastavro.schemaless_reader(body, self._parsed, self._parsed)
        except Exception as exc:  # fastavro raises several types on truncated or bad bytes
            raise WireFormatError(f"not a valid Avro record: {exc}", code="BAD_AVRO") from exc
        extra = len(data) - _HEADER.size - body.tell()
        if extra:
            # fastavro stops at the record's end: bytes after it are not part of any record.
            raise WireFormatError(
                f"not a valid Avro record: {extra} byte(s) after the record's end", code="BAD_AVRO"
            )
        if not isinstance(record, dict):
            raise WireFormatError("Avro value is not a record", code="BAD_AVRO")
        if strict:
            self._check_canonical(data)
        return record

    def _check_canonical(self, data: bytes) -> None:
        if self._names is None:  # once per schema, on the first strict read
            self._names = schema_names(self._parsed)
        body = memoryview(data)[_HEADER.size :]
        problem = encoding_problem(self._parsed, body, self._names)
        if problem is not None:
            raise WireFormatError(
                f"not a valid Avro record: {problem}; no Avro writer makes such bytes (write "
                "the record with a standard Avro library)",
                code="BAD_AVRO",
            )


def value_subject(topic: str) -> str:
    """Confluent's TopicNameStrategy, so any Kafka tool finds the schema of a topic."""
    return f"{topic}-value"


def schema_id_of(data: bytes | None) -> int:
    """The schema id in the framing; :class:`WireFormatError` if the bytes are not framed."""
    if data is None:
        raise WireFormatError("no value (a tombstone)", code="TOMBSTONE")
    if len(data) < _HEADER.size or data[0] != MAGIC:
        raise WireFormatError(
            "not Confluent wire format (expected a zero byte and a 4-byte schema id)",
            code="BAD_FRAMING",
        )
    return int(_HEADER.unpack_from(data)[1])


class SchemaLookup:
    """Decodes records by the writer schema their framing names, fetched once per id.

    ``fetch`` is the registry's ``schema_by_id``; a reader of a topic whose producers move to a
    newer schema version keeps decoding every record as written.
    """

    def __init__(
        self,
        fetch: Callable[[int], dict[str, Any]],
        subjects: Callable[[int], set[str]] | None = None,
    ) -> None:
        self._fetch = fetch
        #: The registry's ``subjects_of``: which subjects an id is a version of. Without it
        #: (readers of the platform's own topics) any id is taken.
        self._subjects = subjects
        self._subjects_of: dict[int, frozenset[str]] = {}
        self._codecs: dict[int, AvroCodec] = {}
        #: Ids the registry did not have, with the error and when it was asked: records naming
        #: an unknown id (bad bytes, or a hostile producer) must not cost a request each.
        self._missing: dict[int, tuple[float, Exception]] = {}

    def codec(self, schema_id: int) -> AvroCodec:
        codec = self._codecs.get(schema_id)
        if codec is not None:
            return codec
        missing = self._missing.get(schema_id)
        if missing is not None and time.monotonic() - missing[0] < MISSING_TTL_S:
            raise missing[1]
        try:
            schema = self._fetch(schema_id)
        except RegistryError as exc:
            if exc.http_status == 404:
                self._missing[schema_id] = (time.monotonic(), exc)
            raise
        try:
            codec = AvroCodec(schema_id, schema)
        except Exception as exc:  # fastavro raises several types for a schema it cannot parse
            error = WireFormatError(
                f"schema id {schema_id} cannot be parsed: {exc}", code="BAD_SCHEMA"
            )
            self._missing[schema_id] = (time.monotonic(), error)
            raise error from exc
        self._codecs[schema_id] = codec
        self._missing.pop(schema_id, None)
        return codec

    def registered_under(self, schema_id: int, subject: str) -> bool:
        """Whether ``schema_id`` is a version of ``subject`` (asked once per id).

        A record framed with another subject's schema id decodes fine when the shapes agree,
        but it is not what the topic's provider registered: a hostile or careless producer's.
        """
        found = self.subjects(schema_id)
        return found is None or subject in found

    def subjects(self, schema_id: int) -> frozenset[str] | None:
        """The subjects ``schema_id`` is a version of, fetched once; ``None`` if not asked."""
        if self._subjects is None:
            return None
        found = self._subjects_of.get(schema_id)
        if found is None:
            found = frozenset(self._subjects(schema_id))
            self._subjects_of[schema_id] = found
        return found

    def cached(self, schema_id: int) -> AvroCodec | None:
        """The codec if it was fetched already (no registry call)."""
        return self._codecs.get(schema_id)

    def decode(self, data: bytes | None, strict: bool = False) -> dict[str, Any]:
        return self.codec(schema_id_of(data)).decode(data or b"", strict)


class _BadEncodingError(Exception):
    """An encoding no Avro writer makes."""


def encoding_problem(
    schema: Any, body: bytes | memoryview, names: dict[str, Any] | None = None
) -> str | None:
    """What in ``body`` is an encoding no Avro writer makes, or ``None``.

    fastavro reads a union or enum index of -1 as Python's ``list[-1]`` (the last branch or
    symbol), a padded number (``0x80 0x00`` for 0) as the number, and any non-zero byte as
    true; the router's kernel and consumers' libraries may read such bytes differently, so a
    strict reader refuses them. ``schema`` is fastavro's parsed form. Pure Python: it runs on
    the router's exact path only (rejections and records the kernel does not take).
    ``names``: :func:`schema_names` of ``schema``, if the caller keeps them.
    """
    walker = _Walker(body, schema_names(schema) if names is None else names)
    try:
        walker.value(schema)
    except _BadEncodingError as exc:
        return f"{exc} at byte {walker.pos} of the body"
    except IndexError:
        return "the record ends early"
    if walker.pos != len(walker.buf):
        return f"{len(walker.buf) - walker.pos} byte(s) after the record's end"
    return None


def schema_names(schema: Any) -> dict[str, Any]:
    """The named types (records, enums, fixed) of a parsed schema, by full name."""
    names: dict[str, Any] = {}
    _collect_names(schema, names)
    return names


def _collect_names(schema: Any, names: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_names(branch, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in schema:
            names[schema["name"]] = schema
        for f in schema.get("fields", ()):
            _collect_names(f["type"], names)
        for key in ("items", "values"):
            if key in schema:
                _collect_names(schema[key], names)
        if isinstance(kind, (dict, list)):
            _collect_names(kind, names)


class _Walker:
    """Reads Avro binary by a schema, checking what :func:`encoding_problem` names."""

    def __init__(self, buf: bytes | memoryview, names: dict[str, Any]) -> None:
        self.buf, self.pos, self.names = buf, 0, names

    def long(self) -> int:
        n, shift, start = 0, 0, self.pos
        while True:
            b = self.buf[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise _BadEncodingError("a number longer than 10 bytes")
        if b == 0 and self.pos - start > 1:
            raise _BadEncodingError("a padded number")
        return (n >> 1) ^ -(n & 1)

    def take(self, size: int) -> None:
        if size < 0:
            raise _BadEncodingError("a negative length")
        if self.pos + size > len(self.buf):
            raise IndexError
        self.pos += size

    def index(self, count: int, what: str) -> int:
        i = self.long()
        if not 0 <= i < count:
            raise _BadEncodingError(f"{what} index {i} of {count}")
        return i

    def value(self, schema: Any) -> None:
        if isinstance(schema, list):
            self.value(schema[self.index(len(schema), "union")])
            return
        if isinstance(schema, str):
            self._primitive(schema)
            return
        kind = schema["type"]
        if kind in ("record", "error"):
            for f in schema["fields"]:
                self.value(f["type"])
        elif kind == "enum":
            self.index(len(schema["symbols"]), "enum")
        elif kind == "fixed":
            self.take(schema["size"])
        elif kind in ("array", "map"):
            self._blocks(schema, kind)
        else:  # {"type": "long", "logicalType": ...} and the like
            self.value(kind)

    def _blocks(self, schema: Any, kind: str) -> None:
        while (count := self.long()) != 0:
            if count < 0:  # a block with its size in bytes: allowed by the spec
                count = -count
                self.long()
            for _ in range(count):
                if kind == "map":
                    self.take(self.long())
                    self.value(schema["values"])
                else:
                    self.value(schema["items"])

    def _primitive(self, name: str) -> None:
        if name == "null":
            return
        if name == "boolean":
            b = self.buf[self.pos]
            self.pos += 1
            if b > 1:
                raise _BadEncodingError(f"a boolean byte {b} (only 0 and 1 are)")
        elif name == "int":
            if not -(2**31) <= self.long() < 2**31:
                raise _BadEncodingError("an int out of its 32-bit range")
        elif name == "long":
            self.long()
        elif name == "float":
            self.take(4)
        elif name == "double":
            self.take(8)
        elif name in ("bytes", "string"):
            self.take(self.long())
        elif name in self.names:
            self.value(self.names[name])
        else:
            raise _BadEncodingError(f"a type this reader does not know: {name}")
