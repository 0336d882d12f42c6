"""The Kafka key of an entry's record: its business key, shared by connectors and the router."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from exchange.catalog.model import CatalogEntry


def record_key(entry: CatalogEntry, record: Mapping[str, Any]) -> str:
    """The business key's value; a JSON array of the values for a composite key."""
    if len(entry.key) == 1:
        return key_text(record[entry.key[0]])
    return json.dumps([key_text(record[k]) for k in entry.key], ensure_ascii=False)


def key_text(value: Any) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)
