"""``exchange quality``: the quality worker, and objections and measures in a terminal."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from typing import Annotated

import typer
from prometheus_client import ProcessCollector

from exchange.cli import output
from exchange.cli.context import configure_logging, state
from exchange.metrics import MetricsServer
from exchange.quality.worker import QualityWorker

app = typer.Typer(help="Data quality: measures, objections, scores.", no_args_is_help=True)


@app.command()
def run(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Option(help="The worker's name: its audit chain is quality.<name>.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /metrics (default: quality.metrics_port).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Measure every entry from its stream, find fixes of objected records and escalate late
    objections, until stopped (SIGINT or SIGTERM). Run one, where the router runs."""
    settings = state(ctx).settings
    configure_logging(log_level)
    worker = QualityWorker(settings, name or socket.gethostname().split(".")[0])
    ProcessCollector(registry=worker.metrics.registry)
    port = settings.quality.metrics_port if metrics_port is None else metrics_port
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    server = MetricsServer(port, settings.quality.metrics_host, worker.metrics.registry)
    output.err.print(
        f"quality worker {worker.name}: every {settings.quality.interval_s:g} s, "
        f"/metrics on port {server.port}"
    )
    logging.getLogger(__name__).info("quality worker %s started", worker.name)
    try:
        worker.run(stop)
    finally:
        server.close()
        worker.stop()
