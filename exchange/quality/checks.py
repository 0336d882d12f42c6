"""多源核验: cross-entry checks declared in the catalog, over the entries' current records.

Each check (``CatalogEntry.checks``) says every value of a field of one entry must be a value
of a field of another entry. :class:`CheckBook` keeps, per key, the current value of each field
a check reads (a delete removes the key), and counts the failing records when asked. Memory is
about 150 bytes per key per field read; a count is one pass over both entries' values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exchange.catalog.model import ConsistencyCheck
from exchange.quality.measures import CheckResult

__all__ = ["CheckBook"]


class CheckBook:
    """The current values the declared checks read, and their results."""

    def __init__(self, checks: Iterable[tuple[str, ConsistencyCheck]]) -> None:
        self.checks = [(entry, c) for entry, c in checks]
        #: (entry, field) -> key -> the field's current value (as text).
        self._values: dict[tuple[str, str], dict[bytes, str]] = {}
        for entry, c in self.checks:
            self._values.setdefault((entry, c.field), {})
            self._values.setdefault((c.exists_in, c.target_field), {})
        self._fields: dict[str, tuple[str, ...]] = {}
        for entry, name in self._values:
            self._fields[entry] = (*self._fields.get(entry, ()), name)

    def reads(self, entry: str) -> bool:
        return entry in self._fields

    def update(self, entry: str, key: bytes, after: Mapping[str, Any] | None) -> None:
        """A committed change of ``entry``'s record ``key`` (``after`` ``None``: deleted)."""
        for name in self._fields.get(entry, ()):
            values = self._values[(entry, name)]
            value = None if after is None else after.get(name)
            if value is None:
                values.pop(key, None)
            else:
                values[key] = str(value)

    def results(self, samples: int = 20) -> dict[str, list[CheckResult]]:
        """Per checked entry, each of its checks' result now."""
        out: dict[str, list[CheckResult]] = {}
        for entry, c in self.checks:
            known = set(self._values[(c.exists_in, c.target_field)].values())
            own = self._values[(entry, c.field)]
            failing = [v for v in own.values() if v not in known]
            out.setdefault(entry, []).append(
                CheckResult(
                    check=c.id,
                    checked=len(own),
                    failing=len(failing),
                    samples=tuple(sorted(failing)[:samples]),
                )
            )
        return out
