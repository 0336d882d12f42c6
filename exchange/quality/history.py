"""The score history as the portal shows it: each entry's and department's latest scores with
their parts, so a department sees what lowered its score and when.

Read from ``topics.quality_scores`` (kept forever; one row per entry and department each
``quality.score_every_s``) a little at a time by the portal's watcher thread, keeping the latest
``keep`` rows per key: a year of hourly rows is 8,760 per entry, more than a page needs.
"""

from __future__ import annotations

import threading
from collections import deque

from exchange.config import ExchangeSettings
from exchange.kafka.follow import Follower
from exchange.quality.assessment import ScoreRow
from exchange.quality.report import parse_score_row

__all__ = ["ScoreHistory", "history_key"]


def history_key(entry: str | None, department: str) -> str:
    return entry if entry is not None else f"department:{department}"


class ScoreHistory:
    """No network until the first :meth:`update`."""

    def __init__(self, settings: ExchangeSettings, keep: int = 240) -> None:
        self._settings = settings
        self._keep = keep
        self._rows: dict[str, deque[ScoreRow]] = {}
        self._lock = threading.Lock()
        self._follower: Follower | None = None

    def update(self, budget_s: float = 2.0) -> None:
        """Read what was added since the last call (within ``budget_s``)."""
        if self._follower is None:
            self._follower = Follower(self._settings.kafka, self._settings.topics.quality_scores)
        rows = [parse_score_row(m.value) for m in self._follower.read_new(budget_s)]
        with self._lock:
            for row in rows:
                if row is not None:
                    key = history_key(row.entry, row.department)
                    self._rows.setdefault(key, deque(maxlen=self._keep)).append(row)

    def of(self, key: str, last: int = 48) -> list[ScoreRow]:
        """The latest ``last`` rows of ``key``, newest first."""
        with self._lock:
            rows = list(self._rows.get(key, ()))
        return rows[::-1][:last]

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
