"""Rows to change records: mapping, conversion, validation, keys and event ids. Pure functions.

A source row becomes a *record* of the entry (a dict matching the entry's Avro record) or a list
of :class:`RowError`; a record becomes a *change* (the envelope: op, after, source, ts_ms,
event_id) keyed by the entry's business key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
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


class MappedBatch:
    """Records of a batch of source rows, as columns: ``values[field][i]`` is row ``i``'s value.

    A rejected row (``i in errors``, with every problem in field order) has placeholders in the
    columns; only the other rows are records.
    """

    __slots__ = ("errors", "rows", "values")

    def __init__(
        self, rows: int, values: dict[str, list[Any]], errors: dict[int, list[RowError]]
    ) -> None:
        self.rows = rows
        self.values = values
        self.errors = errors

    def record(self, i: int) -> dict[str, Any]:
        return {name: column[i] for name, column in self.values.items()}


class RowMapper:
    """Turns source rows into records of one entry, a batch of rows at a time.

    A row is its cells in the order of :attr:`columns` (a CSV or XLSX row picked by the header,
    or a mapping read with :meth:`cells`). Each field is converted and checked a column at a time:
    one loop per field instead of a walk over the fields per row.
    """

    def __init__(
        self, entry: CatalogEntry, schema: dict[str, Any], sources: Mapping[str, FieldSource]
    ) -> None:
        self.entry = entry
        self.types: dict[str, FieldType] = record_fields(schema)
        unknown = sorted(set(sources) - set(self.types))
        if unknown:
            raise ValueError(f"not fields of {entry.id}: {', '.join(unknown)}")
        self.sources = dict(sources)
        #: Source columns the mapping reads, each once, in the order rows give their cells.
        self.columns: list[str] = list(dict.fromkeys(s.column for s in self.sources.values()))
        self._plan: list[_FieldPlan] = []
        for name, ftype in self.types.items():
            source = self.sources.get(name)
            spec = entry.fields.get(name)
            self._plan.append(
                _FieldPlan(
                    name,
                    self.columns.index(source.column) if source else None,
                    converter(
                        ftype,
                        values=source.values if source else None,
                        date_format=source.date_format if source else None,
                    ),
                    ftype.nullable,
                    [(r.name, checker(r)) for r in (spec.rules if spec else ())],
                )
            )

    def cells(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """A row given as a mapping (column -> value), as the cells :meth:`map_batch` takes."""
        return tuple(row.get(column) for column in self.columns)

    def map_batch(self, rows: Sequence[Sequence[Any]]) -> MappedBatch:
        """The records of ``rows``, or why each rejected one cannot be a record (every problem of
        it, not just the first)."""
        n = len(rows)
        columns = list(zip(*rows, strict=True)) if n else [()] * len(self.columns)
        errors: dict[int, list[RowError]] = {}
        values: dict[str, list[Any]] = {}
        for plan in self._plan:
            raw = columns[plan.column] if plan.column is not None else (None,) * n
            values[plan.name] = plan.apply(raw, errors)
        return MappedBatch(n, values, errors)

    def to_record(self, row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[RowError]]:
        """The entry's record of one row given as a mapping, or why it cannot be one."""
        batch = self.map_batch([self.cells(row)])
        errors = batch.errors.get(0)
        return (None, errors) if errors else (batch.record(0), [])

    def key_record(self, cells: Sequence[Any]) -> tuple[dict[str, Any] | None, list[RowError]]:
        """Just the key fields of a row's cells (for deletes, where nothing else is sent, and for
        the key of a rejected row)."""
        record: dict[str, Any] = {}
        errors: list[RowError] = []
        for plan in self._plan:
            name = plan.name
            if name not in self.entry.key:
                continue
            cell = cells[plan.column] if plan.column is not None else None
            try:
                value = plan.convert(cell)
            except _READ_ERRORS as exc:
                errors.append(unreadable(name, cell, exc))
                continue
            problems = [p for _name, check in plan.rules if (p := check(value)) is not None]
            if value is None:
                errors.append(RowError(name, "required", "key field is required"))
            elif problems:
                errors.append(RowError(name, "key", problems[0]))
            record[name] = value
        return (None, errors) if errors else (record, [])


#: What a converter may raise for a value it cannot read. Converters raise ConversionError; the
#: others are a safety net, so that a value nobody foresaw rejects its row instead of stopping
#: the connector (it would stop again at the same row after every restart).
_READ_ERRORS = (ValueError, ArithmeticError, TypeError)


def unreadable(field: str, cell: Any, exc: Exception) -> RowError:
    if isinstance(exc, ConversionError):
        return RowError(field, "unreadable", str(exc))
    shown = repr(cell)
    shown = shown if len(shown) <= 80 else f"{shown[:77]}..."
    return RowError(field, "unreadable", f"cannot read {shown}: {type(exc).__name__} {exc}")


class _FieldPlan:
    """How one field is read from a column of cells: converted, then checked."""

    __slots__ = ("column", "convert", "name", "nullable", "rules")

    def __init__(
        self,
        name: str,
        column: int | None,
        convert: Converter,
        nullable: bool,
        rules: list[tuple[str, Checker]],
    ) -> None:
        self.name = name
        self.column = column
        self.convert = convert
        self.nullable = nullable
        self.rules = rules

    def apply(self, raw: Sequence[Any], errors: dict[int, list[RowError]]) -> list[Any]:
        """The column's values; each problem goes into ``errors`` under its row (at most one per
        field: a value that cannot be read is not checked, and the first broken rule is
        reported)."""
        name = self.name
        try:
            values = list(map(self.convert, raw))
            failed: set[int] = set()
        except _READ_ERRORS:
            values, failed = [], set()
            for i, cell in enumerate(raw):
                try:
                    values.append(self.convert(cell))
                except _READ_ERRORS as exc:
                    values.append(None)
                    failed.add(i)
                    errors.setdefault(i, []).append(unreadable(name, cell, exc))
        for rule_name, check in self.rules:
            problems = list(map(check, values))
            if problems.count(None) == len(problems):
                continue
            for i, problem in enumerate(problems):
                if problem is not None and i not in failed:
                    failed.add(i)
                    errors.setdefault(i, []).append(RowError(name, rule_name, problem))
        if not self.nullable and None in values:
            for i, value in enumerate(values):
                if value is None and i not in failed:
                    errors.setdefault(i, []).append(
                        RowError(name, "required", "is required (empty)")
                    )
        return values


def event_id(entry_id: str, op: Op, key: str, identity: str, after: bytes | None) -> str:
    """Deterministic id of one version of one source row.

    ``identity`` says where the row is in its source in a way that does not change when it is read
    again (the file's digest and the row number, the table row's id and update time, the HTTP
    client's own id). The key and the record's content (``after``: its Avro encoding under the
    entry's schema, None for a delete) are hashed in too, so a position reused for different
    content is a different event.
    """
    return event_ids(entry_id, op, [key], [identity], [after])[0]


def event_ids(
    entry_id: str,
    op: Op,
    keys: Sequence[str],
    identities: Sequence[str],
    afters: Sequence[bytes | None],
) -> list[str]:
    """:func:`event_id` of a batch of changes: SHA-256 over the entry, op, key and identity, each
    followed by 0x1F, then ``after``'s bytes; the first 32 hex digits."""
    prefix = f"{entry_id}\x1f{op}\x1f".encode()
    sep, sha256 = b"\x1f", hashlib.sha256
    return [
        sha256(
            b"".join(
                (prefix, key.encode("utf-8"), sep, identity.encode("utf-8"), sep, after or b"")
            )
        ).hexdigest()[:32]
        for key, identity, after in zip(keys, identities, afters, strict=True)
    ]


def source_of(identity: Identity, position: str) -> dict[str, str]:
    """The envelope's ``source`` field."""
    return {
        "department": identity.department,
        "system": identity.system,
        "connector": identity.connector,
        "position": position,
    }
