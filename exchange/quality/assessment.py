"""监督考核: each department's collection and sharing work over a period, and the city's ranking.

Pure: :func:`assess` turns what the topics hold (the published catalog, grants, objections,
the quality worker's score history, the router's delivery receipts, which entries had data by
the period's end) into one row per department. ``report.py`` gathers those from Kafka and prints
the table, CSV or a printable HTML page.

Per department, over ``[start, end)`` of the period (at UTC+``utc_offset_hours``):

- entries it provides, and how many had a record stamped before the period ended (归集率);
- timeliness: the mean of its entries' timeliness in the period's scores (1 = on time);
- quality: the mean of its score in the period's history;
- grant requests on its entries filed in the period, how many it decided, the median hours
  to decide; objections filed on its entries in the period, how many it had settled (fixed, or
  rejected with its reason) before its end, the median hours from filing to that; records
  delivered from its entries;
- points (0-100): the weighted mean (as the quality score is) of 归集率 (30), quality (30),
  timeliness (20), requests decided (10) and objections resolved (10), over the parts that
  apply; the ranking orders departments that provide entries by points.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from exchange.grants.model import Grant
from exchange.quality.measures import score
from exchange.quality.objections import Objection

__all__ = [
    "ASSESSMENT_WEIGHTS",
    "Assessment",
    "Period",
    "ScoreRow",
    "assess",
    "parse_period",
]

ASSESSMENT_WEIGHTS: dict[str, float] = {
    "collection": 30.0,
    "quality": 30.0,
    "timeliness": 20.0,
    "decisions": 10.0,
    "objections": 10.0,
}
_QUARTER = re.compile(r"^(\d{4})[Qq]([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")


@dataclass(frozen=True)
class Period:
    label: str
    start: dt.datetime
    end: dt.datetime

    def holds(self, at: dt.datetime | None) -> bool:
        return at is not None and self.start <= at < self.end


def parse_period(text: str, utc_offset_hours: float = 8.0) -> Period:
    """``2026Q4`` (a quarter), ``2026-11`` (a month) or ``2026`` (a year), in the platform's
    time zone; :class:`ValueError` says what is accepted."""
    zone = dt.timezone(dt.timedelta(hours=utc_offset_hours))
    text = text.strip()
    if m := _QUARTER.match(text):
        year, first = int(m.group(1)), 3 * int(m.group(2)) - 2
        start, end = (year, first), (year + (first + 3 > 12), (first + 2) % 12 + 1)
    elif (m := _MONTH.match(text)) and 1 <= int(m.group(2)) <= 12:
        year, month = int(m.group(1)), int(m.group(2))
        start, end = (year, month), (year + (month == 12), month % 12 + 1)
        text = f"{year}-{month:02d}"
    elif re.fullmatch(r"\d{4}", text):
        start, end = (int(text), 1), (int(text) + 1, 1)
    else:
        raise ValueError(f"period {text!r}: write a quarter (2026Q4), a month (2026-11) or a year")
    return Period(
        text.upper(),
        dt.datetime(start[0], start[1], 1, tzinfo=zone).astimezone(dt.UTC),
        dt.datetime(end[0], end[1], 1, tzinfo=zone).astimezone(dt.UTC),
    )


@dataclass(frozen=True)
class ScoreRow:
    """One record of the score history (``topics.quality_scores``)."""

    at: dt.datetime
    #: ``None`` for a department's own row.
    entry: str | None
    department: str
    score: float
    parts: Mapping[str, float]


@dataclass(frozen=True)
class Assessment:
    department: str
    name: str
    entries: int
    with_data: int
    collection_rate: float | None
    timeliness: float | None
    quality: float | None
    requests: int
    decided: int
    median_decision_h: float | None
    objections: int
    resolved: int
    median_resolve_h: float | None
    shared_records: int
    points: float | None
    rank: int | None


def assess(
    period: Period,
    departments: Mapping[str, str],
    providers: Mapping[str, str],
    with_data: Iterable[str],
    grants: Iterable[Grant],
    objections: Iterable[Objection],
    scores: Iterable[ScoreRow],
    delivered: Mapping[str, int],
) -> list[Assessment]:
    """One row per department (``departments``: id -> name), ranked. ``providers``: entry ->
    its provider; ``with_data``: entries with a record before the period's end; ``delivered``:
    entry -> records delivered in the period."""
    had = set(with_data)
    in_period = [s for s in scores if period.holds(s.at)]
    grants = [g for g in grants if period.holds(g.requested_at)]
    filed = [o for o in objections if period.holds(o.filed_at)]
    rows = []
    for dept, name in departments.items():
        mine = sorted(e for e, p in providers.items() if p == dept)
        requests = [g for g in grants if providers.get(g.request.entry) == dept]
        decisions = [
            _hours(g.requested_at, g.decision.at)
            for g in requests
            if g.decision is not None and g.decision.at < period.end
        ]
        raised = [o for o in filed if o.provider == dept]
        resolved = [
            _hours(o.filed_at, o.answered_at)
            for o in raised
            if o.answered_at is not None and o.answered_at < period.end
        ]
        own_scores = [s.score for s in in_period if s.entry is None and s.department == dept]
        timely = [
            s.parts["timeliness"] for s in in_period if s.entry in mine and "timeliness" in s.parts
        ]
        row = Assessment(
            department=dept,
            name=name,
            entries=len(mine),
            with_data=sum(e in had for e in mine),
            collection_rate=sum(e in had for e in mine) / len(mine) if mine else None,
            timeliness=_mean(timely),
            quality=_mean(own_scores),
            requests=len(requests),
            decided=len(decisions),
            median_decision_h=statistics.median(decisions) if decisions else None,
            objections=len(raised),
            resolved=len(resolved),
            median_resolve_h=statistics.median(resolved) if resolved else None,
            shared_records=sum(delivered.get(e, 0) for e in mine),
            points=None,
            rank=None,
        )
        rows.append(_with_points(row))
    return _ranked(rows)


def _with_points(row: Assessment) -> Assessment:
    if not row.entries:
        return row
    parts: dict[str, float] = {}
    if row.collection_rate is not None:
        parts["collection"] = row.collection_rate
    if row.quality is not None:
        parts["quality"] = row.quality / 100.0
    if row.timeliness is not None:
        parts["timeliness"] = row.timeliness
    parts["decisions"] = row.decided / row.requests if row.requests else 1.0
    parts["objections"] = row.resolved / row.objections if row.objections else 1.0
    return replace(row, points=score(parts, ASSESSMENT_WEIGHTS))


def _ranked(rows: list[Assessment]) -> list[Assessment]:
    scored = sorted(
        (r for r in rows if r.points is not None), key=lambda r: (-(r.points or 0), r.department)
    )
    rank = {r.department: i + 1 for i, r in enumerate(scored)}
    out = [replace(r, rank=rank.get(r.department)) for r in rows]
    return sorted(out, key=lambda r: (r.rank is None, r.rank or 0, r.department))


def _hours(start: dt.datetime, end: dt.datetime | None) -> float:
    assert end is not None
    return round((end - start).total_seconds() / 3600.0, 3)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None
