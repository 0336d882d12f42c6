"""``exchange router``: run one router worker (a faust-streaming app)."""

from __future__ import annotations

import logging
import socket
from typing import Annotated

import faust
import typer

from exchange.cli import output
from exchange.cli.context import configure_logging, state
from exchange.metrics import MetricsServer
from exchange.routing.app import build_app, restart_process
from exchange.routing.service import RouterError, RouterService
from exchange.runtime import freeze_startup_objects


def router(
    ctx: typer.Context,
    worker_id: Annotated[
        str | None,
        typer.Option(
            help="Stable name of this worker: its audit chain is router.<id>. Two workers must "
            "not share one (the second takes the chain over). Default: <host>-<metrics port>."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /metrics (default: router.metrics_port).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Route source records to authorised consumers, with audit; runs until stopped."""
    settings = state(ctx).settings
    level = configure_logging(log_level)
    for noisy in ("httpx", "httpx2", "aiokafka", "faust", "mode"):
        # One line per HTTP call or fetch: only their warnings belong in the router's log.
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    port = settings.router.metrics_port if metrics_port is None else metrics_port
    worker = worker_id or f"{socket.gethostname()}-{port}"
    server = MetricsServer(port, settings.router.metrics_host)
    service = RouterService(settings, worker)
    service.start()
    if not service.source_topics():
        raise RouterError(
            f"the catalog on {settings.topics.catalog} names no entries: run "
            "`exchange catalog apply` first",
            code="NO_SOURCES",
        )
    output.err.print(
        f"router {worker}: {len(service.source_topics())} source topic(s), "
        f"/metrics on port {server.port}"
    )
    datadir = settings.resolve(settings.router.data_dir) / worker
    datadir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings, service, datadir, restart_process)
    freeze_startup_objects()
    try:
        # Installs SIGTERM/SIGINT handlers: stop, commit what was routed, exit.
        faust.Worker(app, loglevel=level, quiet=True).execute_from_commandline()
    finally:
        service.close()
        server.close()
