"""What every source offers the runtime, and the preview shown by ``connector check``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.publisher import Publisher
from connectors.records import RowError, RowMapper


@dataclass(frozen=True)
class Preview:
    """One source row as it would be published (or why it would be rejected)."""

    position: str
    op: str
    key: str | None
    record: dict[str, Any] | None
    errors: list[RowError] = field(default_factory=list)


class Source(Protocol):
    def check(self) -> list[str]:
        """Reach the source without changing it; facts worth showing. Raises SourceError."""
        ...

    def preview(self, mapper: RowMapper, limit: int) -> list[Preview]:
        """The first rows as they would be published, without publishing or moving anything."""
        ...

    def run(
        self,
        publisher: Publisher,
        saved: dict[str, Any] | None,
        stop: threading.Event,
        once: bool,
    ) -> None:
        """Publish until ``stop`` is set (or, with ``once``, until the source is drained)."""
        ...
