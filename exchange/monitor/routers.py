"""The router workers' own view of their grant book, from their ``/metrics``.

Everything else ``exchange status`` shows is read from Kafka; whether a worker's copy of the
grants is current is known only to the worker (issue 21: a reader that failed silently left
revocations unheeded). The group's description names each worker and its host; its metrics are
read from ``http://<host>:<router.metrics_port>/metrics``.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from exchange.monitor.figures import RouterFigures

__all__ = ["grant_book_figures", "scrape_router"]

AGE = "exchange_router_grant_book_age_seconds"
FAILURES = "exchange_router_grant_book_failures"


def grant_book_figures(text: str) -> tuple[float | None, int | None]:
    """``(age in seconds, failures)`` of the grant book in a worker's metrics text; ``None``
    for what it does not show."""
    age: float | None = None
    failures: int | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == AGE:
                age = float(sample.value)
            elif sample.name == FAILURES:
                failures = int(sample.value)
    return age, failures


#: A worker's whole /metrics is a few hundred kB even with 10,000 grants.
MAX_METRICS_BYTES = 16 * 1024 * 1024
#: Straight to the worker, never through an HTTP proxy of the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape_router(worker: str, host: str, port: int, timeout_s: float = 2.0) -> RouterFigures:
    """One worker's figures; an unreachable or unreadable endpoint is said as the problem."""
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
    try:
        with _DIRECT.open(url, timeout=timeout_s) as response:
            text = response.read(MAX_METRICS_BYTES).decode("utf-8", "replace")
        age, failures = grant_book_figures(text)
    except Exception as exc:  # anything from the other end is its problem, not the status's
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return RouterFigures(worker, host, url, None, None, f"metrics not readable: {reason}")
    if age is None:
        return RouterFigures(worker, host, url, None, failures, "no grant book figures")
    return RouterFigures(worker, host, url, age, failures, None)
