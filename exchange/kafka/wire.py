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

    @property
    def parsed(self) -> Any:
        """The schema as fastavro parsed it."""
        return self._parsed

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self._parsed, record)
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
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
        return record


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

    def __init__(self, fetch: Callable[[int], dict[str, Any]]) -> None:
        self._fetch = fetch
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

    def cached(self, schema_id: int) -> AvroCodec | None:
        """The codec if it was fetched already (no registry call)."""
        return self._codecs.get(schema_id)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        return self.codec(schema_id_of(data)).decode(data or b"")
