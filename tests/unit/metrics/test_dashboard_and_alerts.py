"""The dashboard and the alert rules name only metrics the code exports; promtool accepts them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

import connectors.metrics
import exchange.routing.metrics
from exchange.monitor.collector import families, health_families
from exchange.quality.metrics import QualityMetrics
from tests.conftest import ROOT

PROMETHEUS = ROOT / "config" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "exchange.json"
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": ("",),
}


def _series_names(metrics: Iterable[Metric]) -> set[str]:
    return {m.name + suffix for m in metrics for suffix in _SUFFIXES[m.type]}


def exported() -> set[str]:
    """Every series name of ours a process can expose: router, connectors, monitor, the quality
    worker."""
    assert exchange.routing.metrics and connectors.metrics  # imported: registered globally
    ours = [m for m in REGISTRY.collect() if m.name.startswith("exchange_")]
    quality = list(QualityMetrics().registry.collect())
    return _series_names([*ours, *families(None), *health_families(None), *quality])


def named_in(expr: str) -> set[str]:
    return set(re.findall(r"\bexchange_[a-z0-9_]+", expr))


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROMETHEUS / "rules" / "exchange-alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def test_every_dashboard_query_names_exported_metrics() -> None:
    known = exported()
    queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        names = named_in(expr)
        assert names, f"panel {title!r} queries none of our metrics: {expr}"
        assert names <= known, f"panel {title!r} names unknown metrics {names - known}"


def test_dashboard_covers_what_the_issue_asks_for() -> None:
    used = set().union(*(named_in(e) for _t, e in dashboard_queries()))
    for wanted in (
        "exchange_source_records_total",  # collection per department and entry
        "exchange_records_delivered_total",  # exchange per consumer and grant
        "exchange_records_denied_total",
        "exchange_dlq_records_total",
        "exchange_routing_latency_seconds_bucket",
        "exchange_consumer_lag_records",
    ):
        assert wanted in used


def test_every_alert_names_exported_metrics() -> None:
    known = exported()
    for alert, expr in alert_rules():
        names = named_in(expr)
        assert names <= known, f"alert {alert} names unknown metrics {names - known}"


def test_the_name_check_fails_on_a_misspelt_metric() -> None:
    assert named_in("rate(exchange_records_delivered[5m])") - exported() == {
        "exchange_records_delivered"
    }


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: scripts/setup.sh --test installs it")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return found


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "rules/exchange-alerts.yml"],
        ["test", "rules", "tests/exchange-alerts.test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args: list[str]) -> None:
    done = subprocess.run(
        [_promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
