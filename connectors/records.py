"""Rows to change records: mapping, conversion, validation, keys and event ids. Pure functions.

A source row becomes a *record* of the entry (a dict matching the entry's Avro record) or a list
of :class:`RowError`; a record becomes a *change* (the envelope: op, after, source, ts_ms,
event_id) keyed by the entry's business key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from connectors.convert import ConversionError, Converter, converter
from exchange.catalog.avro import FieldType, record_fields
from exchange.catalog.model import CatalogEntry
from exchange.rules.rules import Checker, checker

Op = Literal["c", "u", "d", "r"]


@dataclass(frozen=True)
class RowError:
    """Why a row was rejected. ``code`` is a short fixed word (a metric label); ``message`` the
    detail a person reads."""

    field: str | None
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True)
class FieldSource:
    """Where one field's value comes from in a source row, and how to read it."""

    column: str
    values: Mapping[str, Any] | None = None
    date_format: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who publishes: goes into every change's ``source``."""

    department: str
    system: str
    connector: str


class RowMapper:
    """Turns source rows (column -> raw value) into records of one entry."""

    def __init__(
        self, entry: CatalogEntry, schema: dict[str, Any], sources: Mapping[str, FieldSource]
    ) -> None:
        self.entry = entry
        self.types: dict[str, FieldType] = record_fields(schema)
        unknown = sorted(set(sources) - set(self.types))
        if unknown:
            raise ValueError(f"not fields of {entry.id}: {', '.join(unknown)}")
        self.sources = dict(sources)
        self._plan: list[tuple[str, str | None, Converter, bool, list[tuple[str, Checker]]]] = []
        for name, ftype in self.types.items():
            source = self.sources.get(name)
            spec = entry.fields.get(name)
            self._plan.append(
                (
                    name,
                    source.column if source else None,
                    converter(
                        ftype,
                        values=source.values if source else None,
                        date_format=source.date_format if source else None,
                    ),
                    ftype.nullable,
                    [(r.name, checker(r)) for r in (spec.rules if spec else ())],
                )
            )

    @property
    def columns(self) -> list[str]:
        """Source columns the mapping reads."""
        return [s.column for s in self.sources.values()]

    def to_record(self, row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[RowError]]:
        """The entry's record, or why the row cannot be one (every problem, not just the first)."""
        record: dict[str, Any] = {}
        errors: list[RowError] = []
        for name, column, convert, nullable, rules in self._plan:
            raw = row.get(column) if column is not None else None
            try:
                value = convert(raw)
            except ConversionError as exc:
                errors.append(RowError(name, "unreadable", str(exc)))
                continue
            for rule_name, check in rules:
                problem = check(value)
                if problem is not None:
                    errors.append(RowError(name, rule_name, problem))
                    break
            else:
                if value is None and not nullable:
                    errors.append(RowError(name, "required", "is required (empty)"))
            record[name] = value
        return (None, errors) if errors else (record, [])

    def key_record(self, row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[RowError]]:
        """Just the key fields of a row (for deletes, where nothing else is sent)."""
        record: dict[str, Any] = {}
        errors: list[RowError] = []
        for name, column, convert, _nullable, rules in self._plan:
            if name not in self.entry.key:
                continue
            try:
                value = convert(row.get(column) if column is not None else None)
            except ConversionError as exc:
                errors.append(RowError(name, "unreadable", str(exc)))
                continue
            problems = [p for _name, check in rules if (p := check(value)) is not None]
            if value is None:
                errors.append(RowError(name, "required", "key field is required"))
            elif problems:
                errors.append(RowError(name, "key", problems[0]))
            record[name] = value
        return (None, errors) if errors else (record, [])


def event_id(entry_id: str, op: Op, key: str, identity: str, after: bytes | None) -> str:
    """Deterministic id of one version of one source row.

    ``identity`` says where the row is in its source in a way that does not change when it is read
    again (the file's digest and the row number, the table row's id and update time, the HTTP
    client's own id). The key and the record's content (``after``: its Avro encoding under the
    entry's schema, None for a delete) are hashed in too, so a position reused for different
    content is a different event.
    """
    digest = hashlib.sha256()
    for part in (entry_id, op, key, identity):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    if after is not None:
        digest.update(after)
    return digest.hexdigest()[:32]


def source_of(identity: Identity, position: str) -> dict[str, str]:
    """The envelope's ``source`` field."""
    return {
        "department": identity.department,
        "system": identity.system,
        "connector": identity.connector,
        "position": position,
    }
