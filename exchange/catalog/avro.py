"""Avro schemas of catalog entries: loading, field types, the change envelope, compatibility."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.errors import AvroException
from avro.schema import parse as avro_parse

NUMERIC_TYPES = frozenset({"int", "long", "float", "double"})
ENVELOPE_FILE = Path("exchange/envelope.avsc")


class SchemaFileError(ValueError):
    """A schema file is missing, not JSON, or not a valid Avro record schema."""


@dataclass(frozen=True)
class FieldType:
    """The shape of one top-level field of an entry's record."""

    name: str
    avro_type: str  # the non-null branch's type name, e.g. "string", "int", "bytes"
    logical_type: str | None
    nullable: bool
    #: Digits and decimal places of a ``decimal``.
    precision: int | None = None
    scale: int | None = None

    @property
    def is_string(self) -> bool:
        return self.avro_type == "string" and self.logical_type is None

    @property
    def is_numeric(self) -> bool:
        return (self.avro_type in NUMERIC_TYPES and self.logical_type is None) or (
            self.logical_type == "decimal"
        )


def load_schema(file: Path) -> dict[str, Any]:
    """Read and check one Avro record schema file."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SchemaFileError(f"schema file {file} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaFileError(f"cannot read schema file {file}: {exc}") from exc
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaFileError(
            f"schema file {file} is not JSON: {exc.msg} at line {exc.lineno}"
        ) from exc
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaFileError(f"schema file {file} must hold one Avro record schema")
    try:
        fastavro.parse_schema(copy.deepcopy(schema))
    except Exception as exc:  # fastavro raises several types for invalid schemas
        raise SchemaFileError(f"schema file {file} is not valid Avro: {exc}") from exc
    return schema


def record_fields(schema: dict[str, Any]) -> dict[str, FieldType]:
    """Top-level fields of a record schema by name."""
    out = {}
    for f in schema.get("fields", []):
        ftype = f["type"]
        nullable = False
        if isinstance(ftype, list):
            branches = [b for b in ftype if b != "null"]
            nullable = len(branches) < len(ftype)
            ftype = branches[0] if len(branches) == 1 else "union"
        logical = precision = scale = None
        if isinstance(ftype, dict):
            logical = ftype.get("logicalType")
            precision, scale = ftype.get("precision"), ftype.get("scale", 0)
            ftype = ftype.get("type", "record")
        out[f["name"]] = FieldType(f["name"], str(ftype), logical, nullable, precision, scale)
    return out


def envelope_schema(
    entry_id: str, record: dict[str, Any], envelope: dict[str, Any]
) -> dict[str, Any]:
    """The change-record schema of one entry: the shared envelope with ``after`` = its record.

    ``schemas/avro/exchange/envelope.avsc`` holds the envelope (op, source, ts_ms, event_id); the
    entry's record is inserted as the nullable ``after`` field (null on delete).
    """
    out = copy.deepcopy(envelope)
    out["namespace"] = record.get("namespace", out.get("namespace"))
    out["doc"] = f"Change record of catalog entry {entry_id}."
    after = {
        "name": "after",
        "type": ["null", copy.deepcopy(record)],
        "default": None,
        "doc": "The entry's record after the change; null when the record was deleted.",
    }
    fields = out["fields"]
    position = next(i for i, f in enumerate(fields) if f["name"] == "op") + 1
    out["fields"] = [*fields[:position], after, *fields[position:]]
    return out


def canonical_json(schema: dict[str, Any]) -> str:
    """A stable text form for comparing and registering schemas."""
    return json.dumps(schema, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def backward_incompatibilities(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Why records written with ``old`` could not be read with ``new`` (BACKWARD), per field.

    Empty when compatible. The Apache Avro checker reports its findings as unordered sets, so we
    run it field by field: each message then names the field it is about.
    """
    if _full_name(new) != _full_name(old):
        return [f"(record): record renamed from {_full_name(old)} to {_full_name(new)}"]
    problems = []
    old_fields = {f["name"]: f for f in old.get("fields", [])}
    for field in new.get("fields", []):
        name = field["name"]
        before = old_fields.get(name)
        if before is None:
            if "default" not in field:
                problems.append(
                    f"{name}: new field without a default, so records written before it "
                    "cannot be read; make it optional (a union with null, default null)"
                )
            continue
        for message in _check(_one_field(new, field), _one_field(old, before)):
            problems.append(f"{name}: {message}")
    if not problems:
        # Catches what the field-by-field view cannot see (e.g. named types shared across fields).
        problems = [f"(record): {m}" for m in _check(new, old)]
    return problems


def _full_name(schema: dict[str, Any]) -> str:
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _one_field(record: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    return {**record, "fields": [field]}


def _check(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    try:
        result = ReaderWriterCompatibilityChecker().get_compatibility(  # type: ignore[no-untyped-call]
            avro_parse(json.dumps(reader)), avro_parse(json.dumps(writer))
        )
    except AvroException as exc:
        return [f"cannot compare: {exc}"]
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return sorted(str(m) for m in result.messages) or ["incompatible"]
