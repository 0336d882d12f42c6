"""The platform's figures at one moment, computed from offsets, grants and the followed topics.

Pure: the observer (``exchange.monitor.observer``) gathers the raw numbers from Kafka; the
functions here turn them into what ``/metrics``, ``exchange status`` and the dashboard show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from exchange.grants.model import GrantTerms

Offsets = Mapping[tuple[str, int], int]


@dataclass(frozen=True)
class SourceFigures:
    entry: str
    department: str
    topic: str
    #: Committed records on the source topic (counted by reading: markers take offsets), or
    #: its offsets where the monitor may not read it (the secure platform: only the router
    #: reads source topics).
    records: int
    #: What the router's group has not committed yet: offsets, counted as records where a
    #: partition is at most ``kafka.control.MARKER_SLACK`` behind (so caught up shows 0).
    router_lag: int


@dataclass(frozen=True)
class DeliveryFigures:
    consumer: str
    entry: str
    topic: str
    #: Records ever delivered to the topic (from the router's receipts on the audit trail).
    records: int


@dataclass(frozen=True)
class GroupLag:
    group: str
    consumer: str
    entry: str
    topic: str
    #: Records on the delivery topic the group has not committed yet.
    lag: int


@dataclass(frozen=True)
class GrantFigures:
    grant_id: str
    consumer: str
    entry: str
    #: pending, active, expired, requested, rejected, revoked...
    status: str
    valid_until: dt.datetime


@dataclass(frozen=True)
class AuditFigures:
    events: int
    events_by_kind: dict[str, int]
    #: Chain id -> ``None`` when intact, else what broke it and where.
    chains: dict[str, str | None]
    unreadable: int

    @property
    def intact(self) -> bool:
        return self.unreadable == 0 and all(v is None for v in self.chains.values())


#: A grant book older than this is shown as stale (the alert ExchangeGrantBookStale's level).
STALE_GRANT_BOOK_S = 10.0


@dataclass(frozen=True)
class RouterFigures:
    """One router worker's grant book as it reports it (``monitor/routers.py``)."""

    worker: str
    host: str
    url: str
    grant_book_age_s: float | None
    grant_book_failures: int | None
    #: Why the figures could not be read (``None`` when they were).
    problem: str | None

    @property
    def state(self) -> str:
        if self.problem is not None:
            return f"unknown: {self.problem}"
        assert self.grant_book_age_s is not None
        if self.grant_book_age_s > STALE_GRANT_BOOK_S:
            return f"STALE: grants as of {self.grant_book_age_s:.0f} s ago"
        return "current"


@dataclass(frozen=True)
class Snapshot:
    taken_at: dt.datetime
    router_workers: int
    sources: list[SourceFigures]
    deliveries: list[DeliveryFigures]
    lags: list[GroupLag]
    grants: list[GrantFigures]
    #: Dead letters by (origin, reason, entry).
    dlq: dict[tuple[str, str, str], int]
    audit: AuditFigures
    problems: list[str] = field(default_factory=list)
    routers: list[RouterFigures] = field(default_factory=list)

    @property
    def dlq_records(self) -> int:
        return sum(self.dlq.values())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, for ``exchange status --json``."""
        return {
            "taken_at": self.taken_at.isoformat(),
            "router_workers": self.router_workers,
            "routers": [{**asdict(r), "state": r.state} for r in self.routers],
            "sources": [asdict(s) for s in self.sources],
            "deliveries": [asdict(d) for d in self.deliveries],
            "consumer_lag": [asdict(g) for g in self.lags],
            "grants": [
                {**asdict(g), "valid_until": g.valid_until.isoformat()} for g in self.grants
            ],
            "dlq": {
                "records": self.dlq_records,
                "by_reason": [
                    {"origin": o, "reason": r, "entry": e, "records": n}
                    for (o, r, e), n in sorted(self.dlq.items())
                ],
            },
            "audit": {
                "events": self.audit.events,
                "events_by_kind": dict(sorted(self.audit.events_by_kind.items())),
                "intact": self.audit.intact,
                "chains": dict(sorted(self.audit.chains.items())),
                "unreadable": self.audit.unreadable,
            },
            "totals": {
                "source_records": sum(s.records for s in self.sources),
                "delivered_records": sum(d.records for d in self.deliveries),
                "router_lag": sum(s.router_lag for s in self.sources),
                "consumer_lag": sum(g.lag for g in self.lags),
                "active_grants": sum(1 for g in self.grants if g.status == "active"),
            },
            "problems": list(self.problems),
        }


def lag(ends: Offsets, committed: Offsets, topic: str, starts: Offsets | None = None) -> int:
    """What a group has left to read on ``topic``: end minus committed, per partition.

    A partition the group never committed counts from its first record still held (``starts``;
    0 when not given): the group starts from the beginning, as the SDK and the router do.
    """
    first = starts or {}
    return sum(
        max(0, end - committed.get((t, p), first.get((t, p), 0)))
        for (t, p), end in ends.items()
        if t == topic
    )


def delivery_owner(
    topic: str, prefix: str, known: Mapping[str, tuple[str, str]]
) -> tuple[str, str]:
    """The (consumer, entry) a delivery topic belongs to: from the grants, else from its name."""
    if topic in known:
        return known[topic]
    consumer, _, rest = topic.removeprefix(prefix).partition(".")
    parts = rest.split(".")
    # <entry>.<grant>.<generation> (an entry id is <provider>.<name>).
    return consumer, ".".join(parts[:2]) if len(parts) == 4 else rest


def group_lags(
    groups: Mapping[str, Offsets],
    ends: Offsets,
    prefix: str,
    known: Mapping[str, tuple[str, str]],
    starts: Offsets | None = None,
) -> list[GroupLag]:
    """Lag of every group on every delivery topic it has committed on."""
    out = []
    for group, committed in sorted(groups.items()):
        for topic in sorted({t for t, _p in committed if t.startswith(prefix)}):
            consumer, entry = delivery_owner(topic, prefix, known)
            out.append(GroupLag(group, consumer, entry, topic, lag(ends, committed, topic, starts)))
    return out


def grant_figures(grants: Iterable[GrantTerms], now: dt.datetime) -> list[GrantFigures]:
    return [
        GrantFigures(g.id, g.consumer, g.entry, g.status(now), g.valid_until)
        for g in sorted(grants, key=lambda g: g.id)
    ]


def expiring(grants: Iterable[GrantFigures], now: dt.datetime, within: dt.timedelta) -> list[str]:
    """Active grants that end within ``within`` of ``now``."""
    return [g.grant_id for g in grants if g.status == "active" and g.valid_until - now <= within]
