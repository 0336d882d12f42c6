"""``exchange monitor`` (the figures on /metrics) and ``exchange status`` (them in a terminal)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry, ProcessCollector
from rich.console import Group
from rich.live import Live

from exchange.cli import output
from exchange.cli.context import state
from exchange.metrics import MetricsServer
from exchange.monitor.collector import Monitor
from exchange.monitor.figures import Snapshot
from exchange.monitor.observer import Observer
from exchange.monitor.view import status_views


def monitor(
    ctx: typer.Context,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /metrics (default: monitor.metrics_port).")
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between readings of Kafka (default: monitor.interval_s)."),
    ] = None,
) -> None:
    """Serve the platform's figures (volumes, lag, grants, DLQ, audit chains) until stopped."""
    settings = state(ctx).settings
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    every = settings.monitor.interval_s if interval is None else interval
    if every < 1:
        raise typer.BadParameter("at least 1 second", param_hint="--interval")
    observer = Observer(settings)
    collector = Monitor(observer, every)
    collector.refresh()
    # Its own registry: the CLI imports the router's modules, whose metrics are not the monitor's.
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    port = settings.monitor.metrics_port if metrics_port is None else metrics_port
    server = MetricsServer(port, settings.monitor.metrics_host, registry)
    output.err.print(f"monitor: figures every {every:g} s, /metrics on port {server.port}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    collector.start()
    try:
        stop.wait()
    finally:
        collector.stop()
        server.close()
        observer.close()


def status(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Show the figures once and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON instead of tables (implies --once).")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Live view of the platform: collection and exchange volumes, lag, grants, DLQ, audit."""
    if interval < 0.5:
        raise typer.BadParameter("at least 0.5 seconds", param_hint="--interval")
    observer = Observer(state(ctx).settings)
    try:
        snap = _complete(observer)
        if as_json:
            typer.echo(json.dumps(snap.to_json(), ensure_ascii=False, indent=2))
            return
        if once:
            output.out.print(_render(snap, None, live=False))
            return
        previous: Snapshot | None = None
        with Live(_render(snap, None), console=output.out, screen=False) as live:
            stopped = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stopped.set())
            while not stopped.wait(interval):
                previous, snap = snap, observer.snapshot(budget_s=min(interval, 5.0))
                live.update(_render(snap, previous))
    finally:
        observer.close()


def _complete(observer: Observer) -> Snapshot:
    """A first snapshot with the DLQ and audit trail read to their ends (long trails: progress)."""
    snap = observer.snapshot()
    while not observer.caught_up:
        output.progress(f"reading the audit trail: {snap.audit.events:,} events so far")
        snap = observer.snapshot()
    return snap


def _render(snap: Snapshot, previous: Snapshot | None, live: bool = True) -> Any:
    tables = [output.make_table(v.title, v.columns, v.rows) for v in status_views(snap, previous)]
    caption = f"[dim]as of {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC"
    caption += "; refreshing, Ctrl-C to stop[/dim]" if live else "[/dim]"
    return Group(*tables, caption)
