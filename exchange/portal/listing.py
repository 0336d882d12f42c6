"""The catalog as the portal lists it: each entry's view made once, searched and paged.

The catalog comes from the platform's configuration and does not change while a replica runs,
so each entry's view (its fields from the record schema with their descriptions and
sensitivity, and the text a search looks in) is made once, at the first listing. A listing is
then a filter over prepared rows and a page of them (a 1,000-entry catalog is never rendered
whole). Pure; unit-tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exchange.catalog.avro import record_fields
from exchange.catalog.load import Catalog

__all__ = ["PAGE_SIZE", "EntryRow", "FieldRow", "Listing", "entry_rows", "search"]

#: Entries per page (API default; at most ``4 * PAGE_SIZE`` on request).
PAGE_SIZE = 50


@dataclass(frozen=True)
class FieldRow:
    name: str
    #: The schema's description of the field (its Chinese name first).
    doc: str
    sensitivity: str


@dataclass(frozen=True)
class EntryRow:
    id: str
    title: str
    provider: str
    description: str
    sharing: str
    update_cycle: str
    fields: tuple[FieldRow, ...]
    #: Lower-cased: id, title, description, field names and descriptions.
    text: str


@dataclass(frozen=True)
class Listing:
    rows: list[EntryRow]
    #: Matching entries in all (``rows`` is one page of them).
    total: int


def entry_rows(catalog: Catalog) -> dict[str, EntryRow]:
    """Every entry's row, by id, in id order."""
    out = {}
    for entry_id in sorted(catalog.entries):
        loaded = catalog.entries[entry_id]
        e = loaded.entry
        schema = loaded.schema or {}
        docs = {f["name"]: str(f.get("doc", "")) for f in schema.get("fields", [])}
        fields = tuple(
            FieldRow(name, docs.get(name, ""), e.sensitivity(name))
            for name in (record_fields(schema) if schema else {})
        )
        text = " ".join(
            [e.id, e.title, e.description] + [f"{f.name} {f.doc}" for f in fields]
        ).lower()
        out[entry_id] = EntryRow(
            e.id, e.title, e.provider, e.description, e.sharing, e.update_cycle, fields, text
        )
    return out


def search(
    rows: Sequence[EntryRow],
    words: str = "",
    provider: str | None = None,
    sharing: str | None = None,
    update_cycle: str | None = None,
    offset: int = 0,
    limit: int = PAGE_SIZE,
) -> Listing:
    """Entries with every one of ``words`` in their text and the given provider, sharing
    class and update cycle (``None`` or ``""``: any); one page of them."""
    wanted = [w for w in words.lower().split() if w]
    found = [
        r
        for r in rows
        if all(w in r.text for w in wanted)
        and provider in (None, "", r.provider)
        and sharing in (None, "", r.sharing)
        and update_cycle in (None, "", r.update_cycle)
    ]
    return Listing(found[max(offset, 0) : max(offset, 0) + limit], len(found))
