"""The quality worker's Prometheus metrics: each entry's measures and score, as gauges.

Labels are bounded (entry, department, field, reason, check, state); a check's failing values
are never a label (they are records' values, shown in the portal to the providers only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Gauge

from exchange.quality.measures import Measures

__all__ = ["QualityMetrics"]


class QualityMetrics:
    """Gauges on a registry of their own, set from each round's measures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        self.records = gauge(
            "exchange_quality_source_records", "Records published, as read", ("entry",)
        )
        self.null_ratio = gauge(
            "exchange_quality_null_ratio",
            "Share of records with the field null",
            ("entry", "field"),
        )
        self.rejected = gauge(
            "exchange_quality_rejected_records",
            "Records set aside (DLQ) by reason",
            ("entry", "reason"),
        )
        self.age = gauge(
            "exchange_quality_last_change_age_seconds",
            "Time since the entry's last change",
            ("entry",),
        )
        self.late = gauge(
            "exchange_quality_late",
            "1 when the entry's last change is older than its update cycle allows",
            ("entry",),
        )
        self.objections = gauge(
            "exchange_quality_objections", "Objections by state group", ("entry", "state")
        )
        self.resolve = gauge(
            "exchange_quality_objection_resolve_median_seconds",
            "Median time from filing to the provider settling it (fixed or rejected)",
            ("entry",),
        )
        self.checked = gauge(
            "exchange_quality_check_records",
            "Records a cross-entry check read",
            ("entry", "check"),
        )
        self.failing = gauge(
            "exchange_quality_check_failing_records",
            "Records failing a cross-entry check",
            ("entry", "check"),
        )
        self.score = gauge("exchange_quality_score_points", "Quality score, 0-100", ("entry",))
        self.department = gauge(
            "exchange_quality_department_score_points",
            "A department's quality score (mean of its entries'), 0-100",
            ("department",),
        )
        self.undecodable = gauge(
            "exchange_quality_undecodable_records",
            "Source records the worker could not decode",
            ("entry",),
        )

    def show(
        self,
        measures: Iterable[Measures],
        departments: Mapping[str, float],
        undecodable: Mapping[str, int],
    ) -> None:
        for g in (
            self.records,
            self.null_ratio,
            self.rejected,
            self.age,
            self.late,
            self.objections,
            self.resolve,
            self.checked,
            self.failing,
            self.score,
            self.department,
            self.undecodable,
        ):
            g.clear()
        for m in measures:
            e = m.entry
            self.records.labels(e).set(m.records)
            for name, share in m.null_share.items():
                self.null_ratio.labels(e, name).set(share)
            for reason, n in m.rejected.items():
                self.rejected.labels(e, reason).set(n)
            if m.age_s is not None:
                self.age.labels(e).set(m.age_s)
            self.late.labels(e).set(1 if m.late else 0)
            self.objections.labels(e, "open").set(m.objections.open)
            self.objections.labels(e, "waiting").set(m.objections.waiting)
            self.objections.labels(e, "resolved").set(m.objections.resolved)
            if m.objections.median_resolve_s is not None:
                self.resolve.labels(e).set(m.objections.median_resolve_s)
            for c in m.checks:
                self.checked.labels(e, c.check).set(c.checked)
                self.failing.labels(e, c.check).set(c.failing)
            self.score.labels(e).set(m.score)
        for d, s in departments.items():
            self.department.labels(d).set(s)
        for e, n in undecodable.items():
            self.undecodable.labels(e).set(n)
