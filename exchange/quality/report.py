"""The assessment report: gathered from the platform's topics, printed as a table, CSV or a
printable HTML page (``exchange report assessment``, and the operators' portal page).

Everything is read from Kafka, never from a process's memory, so two runs for a past period
agree: the published catalog (entries and providers), the grants, the objections, the quality
worker's score history, the router's delivery receipts on the audit trail, and, per source
partition, whether a record was stamped before the period's end (asked of the broker by
timestamp: no record is read).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2

from exchange.audit.receipts import receipt_rows
from exchange.audit.trail import read_trail
from exchange.catalog.published import read_published
from exchange.config import ExchangeSettings
from exchange.grants.model import Grant
from exchange.kafka.admin import Admin
from exchange.kafka.control import read_all, read_table
from exchange.quality.assessment import Assessment, Period, ScoreRow, assess
from exchange.quality.objections import Objection

__all__ = ["COLUMNS", "as_csv", "as_html", "cells", "gather_assessment", "parse_score_row"]

#: The report's columns: (heading, what it holds).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("排名 rank", "rank"),
    ("部门 department", "department"),
    ("名称 name", "name"),
    ("目录 entries", "entries"),
    ("有数据 with data", "with_data"),
    ("归集率 collection", "collection_rate"),
    ("及时性 timeliness", "timeliness"),
    ("质量分 quality", "quality"),
    ("申请 requests", "requests"),
    ("已办理 decided", "decided"),
    ("办理时长(h) median", "median_decision_h"),
    ("异议 objections", "objections"),
    ("已解决 resolved", "resolved"),
    ("解决时长(h) median", "median_resolve_h"),
    ("共享记录 records shared", "shared_records"),
    ("得分 points", "points"),
)
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
)


def gather_assessment(
    settings: ExchangeSettings,
    period: Period,
    departments: dict[str, str],
    progress: Callable[[str], None] = lambda _m: None,
) -> list[Assessment]:
    """The period's assessment of ``departments`` (id -> name), from the topics."""
    t = settings.topics
    progress("reading the catalog, grants and objections")
    published = read_published(settings)
    providers = {e: p.entry.provider for e, p in published.entries.items()}
    grants = [Grant.decode(v) for v in read_table(settings.kafka, t.grants).values()]
    objections = [Objection.decode(v) for v in read_table(settings.kafka, t.objections).values()]
    progress("reading the score history")
    scores = [parse_score_row(m.value) for m in read_all(settings.kafka, t.quality_scores)]
    progress("reading the delivery receipts on the audit trail")
    delivered: Counter[str] = Counter()
    for read in read_trail(settings):
        event = read.event
        if event is None or not period.holds(_at(event.ts_ms)):
            continue
        for row in receipt_rows(event):
            delivered[row.entry] += row.count
    progress("asking the broker which entries had data")
    topics = {p.source_topic: e for e, p in published.entries.items()}
    with_data = _entries_with_data(Admin(settings.kafka), topics, period)
    return assess(
        period,
        departments,
        providers,
        with_data,
        grants,
        objections,
        [s for s in scores if s is not None],
        delivered,
    )


def _entries_with_data(admin: Admin, topics: dict[str, str], period: Period) -> set[str]:
    counts = admin.partition_counts()
    tps = [(t, p) for t in topics if t in counts for p in range(counts[t])]
    starts = admin.start_offsets(tps)
    ends = admin.end_offsets(tps)
    at_end = admin.offsets_at_time(tps, int(period.end.timestamp() * 1000))
    out = set()
    for tp in tps:
        first_after = at_end.get(tp, -1)
        before_end = ends[tp] if first_after < 0 else first_after
        if before_end > starts[tp]:
            out.add(topics[tp[0]])
    return out


def parse_score_row(raw: bytes | None) -> ScoreRow | None:
    """One record of the score history; ``None`` for one that is not (set aside)."""
    try:
        row = json.loads(raw or b"")
        return ScoreRow(
            at=dt.datetime.fromisoformat(row["at"]),
            entry=row.get("entry"),
            department=str(row["department"]),
            score=float(row["score"]),
            parts={str(k): float(v) for k, v in (row.get("parts") or {}).items()},
        )
    except (ValueError, KeyError, TypeError):
        return None  # a record that is not a score row is no score


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def cells(row: Assessment) -> list[str]:
    """A row's cells as the report prints them (shares as percentages, '-' where none)."""
    out = []
    for _heading, name in COLUMNS:
        value = getattr(row, name)
        if value is None:
            out.append("-")
        elif name in ("collection_rate", "timeliness"):
            out.append(f"{100 * value:.1f}%")
        elif isinstance(value, float):
            out.append(f"{value:.1f}")
        else:
            out.append(str(value))
    return out


def as_csv(rows: Sequence[Assessment]) -> str:
    """Raw figures (shares 0-1, empty where none): for a spreadsheet."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([name for _h, name in COLUMNS])
    for r in rows:
        writer.writerow(["" if getattr(r, n) is None else getattr(r, n) for _h, n in COLUMNS])
    return buf.getvalue()


def as_html(rows: Sequence[Assessment], period: Period, made_at: dt.datetime) -> str:
    """A page that prints cleanly (A4 landscape, no navigation)."""
    return _TEMPLATES.get_template("assessment.html").render(
        period=period,
        made_at=made_at,
        headings=[h for h, _n in COLUMNS],
        rows=[cells(r) for r in rows],
    )
