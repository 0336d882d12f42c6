"""The Kafka key of an entry's record: its business key, shared by connectors and the router."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from exchange.catalog.model import CatalogEntry


def record_key(entry: CatalogEntry, record: Mapping[str, Any]) -> str:
    """The business key's value; a JSON array of the values for a composite key."""
    if len(entry.key) == 1:
        return key_text(record[entry.key[0]])
    return json.dumps([key_text(record[k]) for k in entry.key], ensure_ascii=False)


def record_keys(
    entry: CatalogEntry, columns: Mapping[str, Sequence[Any]], rows: Iterable[int]
) -> list[str]:
    """:func:`record_key` of the records ``rows`` of a batch given as columns (field -> values)."""
    if len(entry.key) == 1:
        column = columns[entry.key[0]]
        return [key_text(column[i]) for i in rows]
    return [record_key(entry, {k: columns[k][i] for k in entry.key}) for i in rows]


def key_text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)
