"""Loading the catalog from ``config/``: every problem is collected, none stops the others.

``load_catalog`` reads the departments file, each ``catalog/*.yaml`` and each entry's Avro schema,
then cross-checks them (:mod:`exchange.catalog.checks`). It returns what loaded plus the list of
problems, so ``exchange catalog validate`` can report them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from exchange.catalog.avro import ENVELOPE_FILE, SchemaFileError, load_schema
from exchange.catalog.checks import check_entries
from exchange.catalog.model import CatalogEntry, Department
from exchange.config import ConfigError, ExchangeSettings, Problem
from exchange.config.problems import Loc, format_loc, nearest_line
from exchange.config.yamlfile import load_items

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class EntrySource:
    """Where an entry was declared, for messages."""

    file: Path
    index: int
    lines: dict[Loc, int]

    def line(self, *loc: str | int) -> int | None:
        return nearest_line(self.lines, ("entries", self.index, *loc))

    def path(self, *loc: str | int) -> str:
        return format_loc(("entries", self.index, *loc))

    def problem(self, message: str, *loc: str | int) -> Problem:
        return Problem(self.file, self.path(*loc), message, self.line(*loc))


@dataclass(frozen=True)
class LoadedEntry:
    entry: CatalogEntry
    source: EntrySource
    #: The entry's record schema (``after`` of its change records); None if it failed to load.
    schema: dict[str, Any] | None


@dataclass
class Catalog:
    departments: dict[str, Department] = field(default_factory=dict)
    entries: dict[str, LoadedEntry] = field(default_factory=dict)
    envelope: dict[str, Any] | None = None


@dataclass
class CatalogLoad:
    catalog: Catalog
    problems: list[Problem]

    def require_valid(self) -> Catalog:
        if self.problems:
            raise ConfigError(self.problems)
        return self.catalog


def load_catalog(settings: ExchangeSettings) -> CatalogLoad:
    problems: list[Problem] = []
    catalog = Catalog()
    for dept in _load_departments(settings.departments_file, problems):
        catalog.departments[dept.id] = dept

    catalog_dir = settings.catalog_dir
    files = sorted(catalog_dir.glob("*.yaml")) + sorted(catalog_dir.glob("*.yml"))
    if not files:
        problems.append(Problem(catalog_dir, "(folder)", "no catalog files (*.yaml) found"))
    loaded: list[tuple[CatalogEntry, EntrySource]] = []
    for file in files:
        loaded.extend(_load_catalog_file(file, problems))

    schemas_dir = settings.schemas_dir
    try:
        catalog.envelope = load_schema(schemas_dir / ENVELOPE_FILE)
    except SchemaFileError as exc:
        problems.append(Problem(schemas_dir / ENVELOPE_FILE, "(schema)", str(exc)))

    for entry, source in loaded:
        schema = None
        try:
            schema = load_schema(schemas_dir / entry.schema_file)
        except SchemaFileError as exc:
            problems.append(source.problem(str(exc), "schema"))
        if entry.id in catalog.entries:
            first = catalog.entries[entry.id].source
            problems.append(
                source.problem(
                    f"duplicate entry id {entry.id!r} (first in {first.file}:{first.line()})", "id"
                )
            )
            continue
        catalog.entries[entry.id] = LoadedEntry(entry, source, schema)

    problems.extend(check_entries(catalog, settings.topics.source_prefix))
    return CatalogLoad(catalog, problems)


def _load_departments(file: Path, problems: list[Problem]) -> list[Department]:
    """Departments one by one: a bad one is reported without hiding the others."""
    loaded = load_items(file, "departments", Department, problems)
    if loaded is None:
        return []
    doc, items = loaded
    by_id: dict[str, Department] = {}
    index_of: dict[str, int] = {}
    for index, dept in items:
        if dept.id in by_id:
            problems.append(
                Problem(
                    file,
                    f"departments[{index}].id",
                    f"duplicate department id {dept.id!r}",
                    doc.lines.get(("departments", index, "id")),
                )
            )
            continue
        by_id[dept.id] = dept
        index_of[dept.id] = index
    for dept in by_id.values():
        index = index_of[dept.id]
        if dept.parent is not None and dept.parent not in by_id:
            problems.append(
                Problem(
                    file,
                    f"departments[{index}].parent",
                    f"unknown department {dept.parent!r}",
                    doc.lines.get(("departments", index, "parent")),
                )
            )
    return list(by_id.values())


def _load_catalog_file(
    file: Path, problems: list[Problem]
) -> list[tuple[CatalogEntry, EntrySource]]:
    """Entries of one file; a bad entry is reported and skipped, its neighbours still load."""
    loaded = load_items(file, "entries", CatalogEntry, problems)
    if loaded is None:
        return []
    doc, items = loaded
    return [(entry, EntrySource(file, index, doc.lines)) for index, entry in items]
