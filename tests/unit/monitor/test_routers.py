"""A router worker's grant book as `exchange status` shows it: read from the worker's own
metrics, served here by a real HTTP server."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from exchange.metrics import MetricsServer
from exchange.monitor.figures import RouterFigures
from exchange.monitor.routers import grant_book_figures, scrape_router
from exchange.monitor.view import status_views
from tests.unit.monitor.fixtures import snapshot


def metrics(age: float, failures: int) -> CollectorRegistry:
    """A registry with the router's two grant-book gauges (names as routing/metrics.py)."""
    registry = CollectorRegistry()
    Gauge("exchange_router_grant_book_age_seconds", "age", registry=registry).set(age)
    Gauge("exchange_router_grant_book_failures", "failures", registry=registry).set(failures)
    return registry


@pytest.fixture
def serving() -> Iterator[tuple[CollectorRegistry, int]]:
    registry = metrics(0.4, 0)
    server = MetricsServer(0, "127.0.0.1", registry)
    try:
        yield registry, server.port
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_figures_are_read_from_the_metrics_text() -> None:
    text = generate_latest(metrics(42.5, 3)).decode()
    assert grant_book_figures(text) == (42.5, 3)
    assert grant_book_figures("# nothing here\n") == (None, None)


def test_a_worker_is_scraped_over_http(serving: tuple[CollectorRegistry, int]) -> None:
    _registry, port = serving
    figures = scrape_router("exchange.router.w1", "127.0.0.1", port)
    assert (figures.grant_book_age_s, figures.grant_book_failures) == (0.4, 0)
    assert figures.state == "current"


def test_an_unreachable_worker_is_said_so_not_taken_as_current() -> None:
    figures = scrape_router("exchange.router.w1", "127.0.0.1", free_port(), timeout_s=1)
    assert figures.problem is not None and "not readable" in figures.problem
    assert figures.state.startswith("unknown")


def test_a_stale_grant_book_is_shown_as_stale() -> None:
    stale = RouterFigures("exchange.router.w1", "10.0.0.5", "http://x", 31.0, 2, None)
    snap = dataclasses.replace(snapshot(30), routers=[stale])
    (view,) = [v for v in status_views(snap) if v.title.startswith("router workers")]
    assert view.rows == [("exchange.router.w1", "10.0.0.5", "STALE: grants as of 31 s ago", "2")]
    assert snap.to_json()["routers"][0]["state"].startswith("STALE")
