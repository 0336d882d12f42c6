"""What ``exchange status`` shows: the snapshot as titled tables (pure; the CLI renders them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from exchange.monitor.figures import Snapshot, expiring

#: Grants ending within this are flagged (as the alert does).
EXPIRY_WARNING = dt.timedelta(days=7)


@dataclass(frozen=True)
class View:
    title: str
    columns: Sequence[str]
    rows: list[tuple[object, ...]]


def _rate(now: int, before: int | None, seconds: float | None) -> str:
    if before is None or not seconds:
        return "-"
    return f"{max(0, now - before) / seconds:,.1f}/s"


def status_views(snap: Snapshot, previous: Snapshot | None = None) -> list[View]:
    """Tables of the snapshot; with ``previous``, rates since then as well."""
    seconds = (snap.taken_at - previous.taken_at).total_seconds() if previous else None
    before_src = {s.topic: s.records for s in previous.sources} if previous else {}
    before_dlv = {d.topic: d.records for d in previous.deliveries} if previous else {}
    soon = set(expiring(snap.grants, snap.taken_at, EXPIRY_WARNING))
    a = snap.audit
    broken = [f"{c}: {why}" for c, why in sorted(a.chains.items()) if why is not None]
    return [
        View(
            "platform",
            ("router workers", "source records", "delivered", "router lag", "DLQ", "audit"),
            [
                (
                    snap.router_workers,
                    f"{sum(s.records for s in snap.sources):,}",
                    f"{sum(d.records for d in snap.deliveries):,}",
                    f"{sum(s.router_lag for s in snap.sources):,}",
                    f"{snap.dlq_records:,}",
                    f"{a.events:,} events, "
                    + ("intact" if a.intact else f"BROKEN ({len(broken) + a.unreadable})"),
                )
            ],
        ),
        View(
            "router workers (their own copy of the grants)",
            ("worker", "host", "grant book", "reader failures"),
            [
                (
                    r.worker,
                    r.host,
                    r.state,
                    "-" if r.grant_book_failures is None else f"{r.grant_book_failures:,}",
                )
                for r in snap.routers
            ],
        ),
        View(
            "collection (per provider and entry)",
            ("department", "entry", "records", "rate", "router lag"),
            [
                (
                    s.department,
                    s.entry,
                    f"{s.records:,}",
                    _rate(s.records, before_src.get(s.topic), seconds),
                    f"{s.router_lag:,}",
                )
                for s in snap.sources
            ],
        ),
        View(
            "exchange (per consumer and entry)",
            ("consumer", "entry", "records", "rate", "active grants"),
            [
                (
                    d.consumer,
                    d.entry,
                    f"{d.records:,}",
                    _rate(d.records, before_dlv.get(d.topic), seconds),
                    ", ".join(
                        g.grant_id
                        for g in snap.grants
                        if g.status == "active" and (g.consumer, g.entry) == (d.consumer, d.entry)
                    )
                    or "-",
                )
                for d in snap.deliveries
            ],
        ),
        View(
            "consumer lag",
            ("group", "consumer", "entry", "lag"),
            [(g.group, g.consumer, g.entry, f"{g.lag:,}") for g in snap.lags],
        ),
        View(
            "grants",
            ("grant", "consumer", "entry", "status", "valid until"),
            [
                (
                    g.grant_id,
                    g.consumer,
                    g.entry,
                    g.status + (" (ends within 7 days)" if g.grant_id in soon else ""),
                    g.valid_until.date().isoformat(),
                )
                for g in snap.grants
            ],
        ),
        View(
            "dead letters",
            ("origin", "reason", "entry", "records"),
            [(o, r, e, f"{n:,}") for (o, r, e), n in sorted(snap.dlq.items())],
        ),
        *(
            [View("problems", ("problem",), [(p,) for p in [*broken, *snap.problems]])]
            if broken or snap.problems
            else []
        ),
    ]
