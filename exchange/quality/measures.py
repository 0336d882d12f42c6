"""Quality measures of an entry, and the score they make: pure, unit-tested without Kafka.

The quality worker (``worker.py``) feeds :class:`EntryTally` with each committed source record
and each dead letter, and takes :func:`measure` of it with the objections and checks; the
result is what the portal shows, the metrics export and the assessment report reads.

The score (0-100) is documented in ``docs/quality.md``::

    score = 100 x sum(weight_i x part_i) / sum(weight_i)   over the parts that apply

    completeness = 1 - mean null share of the entry's fields            (records published)
    validity     = 1 - rejected / offered   (offered: published + rows connectors refused)
    timeliness   = 1 when on time; cycle x late_factor / age when late; 0 with no data yet
    objections   = 1 / (1 + objections waiting for the provider)
    consistency  = 1 - failing / checked, over the entry's declared checks    (when declared)

A department's score is the mean of its entries' scores.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange.quality.objections import WAITING_FOR_PROVIDER, Objection

__all__ = [
    "CYCLE_S",
    "DEFAULT_WEIGHTS",
    "CheckResult",
    "EntryTally",
    "Measures",
    "ObjectionFigures",
    "department_scores",
    "measure",
    "objection_figures",
    "score",
]

#: How long an update cycle is, in seconds; ``realtime`` and ``on_change`` promise no rhythm
#: (an entry that changes when the world does is never late).
CYCLE_S: dict[str, float | None] = {
    "realtime": None,
    "on_change": None,
    "hourly": 3_600.0,
    "daily": 86_400.0,
    "weekly": 7 * 86_400.0,
    "monthly": 31 * 86_400.0,
    "quarterly": 92 * 86_400.0,
    "yearly": 366 * 86_400.0,
}
DEFAULT_WEIGHTS: dict[str, float] = {
    "completeness": 30.0,
    "validity": 30.0,
    "timeliness": 20.0,
    "objections": 10.0,
    "consistency": 10.0,
}


@dataclass
class EntryTally:
    """What the worker counted of one entry's stream since it started reading it."""

    fields: tuple[str, ...]
    records: int = 0
    deletes: int = 0
    nulls: Counter[str] = field(default_factory=Counter)
    #: Dead letters by reason (connectors' and the router's, from the DLQ) ...
    rejected: Counter[str] = field(default_factory=Counter)
    #: ... of which connectors' (rows never published; the router's were published first).
    rejected_upstream: int = 0
    #: The newest record's timestamp (ms), a change or a delete.
    last_change_ms: int | None = None

    def add(self, after: Mapping[str, Any] | None, ts_ms: int) -> None:
        """One committed source record (``after`` ``None``: a delete)."""
        if self.last_change_ms is None or ts_ms > self.last_change_ms:
            self.last_change_ms = ts_ms
        if after is None:
            self.deletes += 1
            return
        self.records += 1
        for name in self.fields:
            if after.get(name) is None:
                self.nulls[name] += 1

    def reject(self, reason: str, origin: str) -> None:
        self.rejected[reason] += 1
        if origin != "router":
            self.rejected_upstream += 1


@dataclass(frozen=True)
class ObjectionFigures:
    #: Not confirmed yet (any state but ``confirmed``).
    open: int
    #: Waiting for the provider (filed, investigating, accepted): these lower the score.
    waiting: int
    #: Settled by the provider (fixed, or rejected with its reason), confirmed or not.
    resolved: int
    #: Median time from filing to the provider's settling, of those resolved.
    median_resolve_s: float | None


@dataclass(frozen=True)
class CheckResult:
    check: str
    #: The entry's current records with a value in the field ...
    checked: int
    #: ... and those whose value the other entry does not hold.
    failing: int
    #: Some failing values (shown to the two providers only).
    samples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measures:
    entry: str
    provider: str
    taken_at: dt.datetime
    records: int
    deletes: int
    null_share: dict[str, float]
    rejected: dict[str, int]
    last_change: dt.datetime | None
    cycle_s: float | None
    age_s: float | None
    late: bool
    objections: ObjectionFigures
    checks: tuple[CheckResult, ...]
    parts: dict[str, float]
    score: float

    def public(self) -> dict[str, Any]:
        """As JSON, without the checks' samples (they are values of the providers' records)."""
        out = self.as_json()
        for c in out["checks"]:
            c["samples"] = []
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "provider": self.provider,
            "taken_at": self.taken_at.isoformat(),
            "records": self.records,
            "deletes": self.deletes,
            "null_share": self.null_share,
            "rejected": self.rejected,
            "last_change": self.last_change.isoformat() if self.last_change else None,
            "cycle_s": self.cycle_s,
            "age_s": self.age_s,
            "late": self.late,
            "objections": self.objections.__dict__,
            "checks": [
                {
                    "check": c.check,
                    "checked": c.checked,
                    "failing": c.failing,
                    "samples": list(c.samples),
                }
                for c in self.checks
            ],
            "parts": self.parts,
            "score": self.score,
        }


def objection_figures(objections: Iterable[Objection]) -> ObjectionFigures:
    waiting = opened = 0
    times = []
    for o in objections:
        opened += o.state != "confirmed"
        waiting += o.state in WAITING_FOR_PROVIDER
        if o.answered_at is not None:
            times.append((o.answered_at - o.filed_at).total_seconds())
    resolved = len(times)
    return ObjectionFigures(
        open=opened,
        waiting=waiting,
        resolved=resolved,
        median_resolve_s=statistics.median(times) if times else None,
    )


def measure(
    entry: str,
    provider: str,
    update_cycle: str,
    tally: EntryTally,
    objections: ObjectionFigures,
    checks: Iterable[CheckResult],
    now: dt.datetime,
    late_factor: float = 1.5,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> Measures:
    last = (
        None
        if tally.last_change_ms is None
        else dt.datetime.fromtimestamp(tally.last_change_ms / 1000, tz=dt.UTC)
    )
    cycle = CYCLE_S.get(update_cycle)
    age = None if last is None else max(0.0, (now - last).total_seconds())
    late = cycle is not None and (age is None or age > cycle * late_factor)
    null_share = {
        f: (tally.nulls[f] / tally.records if tally.records else 0.0) for f in tally.fields
    }
    checks = tuple(checks)
    parts = _parts(tally, null_share, cycle, age, late, late_factor, objections, checks)
    return Measures(
        entry=entry,
        provider=provider,
        taken_at=now,
        records=tally.records,
        deletes=tally.deletes,
        null_share=null_share,
        rejected=dict(tally.rejected),
        last_change=last,
        cycle_s=cycle,
        age_s=age,
        late=late,
        objections=objections,
        checks=checks,
        parts=parts,
        score=score(parts, weights),
    )


def _parts(
    tally: EntryTally,
    null_share: Mapping[str, float],
    cycle: float | None,
    age: float | None,
    late: bool,
    late_factor: float,
    objections: ObjectionFigures,
    checks: tuple[CheckResult, ...],
) -> dict[str, float]:
    """Each part of the score in [0, 1]; a part that does not apply is left out."""
    parts: dict[str, float] = {}
    if tally.records and null_share:
        parts["completeness"] = 1.0 - sum(null_share.values()) / len(null_share)
    offered = tally.records + tally.deletes + tally.rejected_upstream
    if offered:
        parts["validity"] = max(0.0, 1.0 - sum(tally.rejected.values()) / offered)
    if age is None:
        parts["timeliness"] = 0.0
    elif cycle is not None:
        parts["timeliness"] = min(1.0, cycle * late_factor / age) if late and age else 1.0
    parts["objections"] = 1.0 / (1.0 + objections.waiting)
    checked = sum(c.checked for c in checks)
    if checked:
        parts["consistency"] = 1.0 - sum(c.failing for c in checks) / checked
    return parts


def score(parts: Mapping[str, float], weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> float:
    """The weighted mean of the parts that apply, 0-100, one decimal."""
    total = sum(weights.get(p, 0.0) for p in parts)
    if not total:
        return 0.0
    return round(100.0 * sum(weights.get(p, 0.0) * v for p, v in parts.items()) / total, 1)


def department_scores(measures: Iterable[Measures]) -> dict[str, float]:
    """Each provider's score: the mean of its entries'."""
    by: dict[str, list[float]] = {}
    for m in measures:
        by.setdefault(m.provider, []).append(m.score)
    return {d: round(sum(s) / len(s), 1) for d, s in by.items()}
