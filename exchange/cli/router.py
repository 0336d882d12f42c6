"""``exchange router``: run one router worker (a faust-streaming app)."""

from __future__ import annotations

import logging
import socket
from typing import Annotated

import faust
import typer

from exchange.catalog.apply import control_topic_specs
from exchange.cli import output
from exchange.cli.context import configure_logging, state
from exchange.config import ExchangeSettings
from exchange.kafka.admin import Admin, plan_topics
from exchange.metrics import MetricsServer
from exchange.routing.app import build_app
from exchange.routing.worker import RouterError, RouterWorker
from exchange.runtime import freeze_startup_objects, map_large_blocks


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
    worker_name = worker_id or f"{socket.gethostname()}-{port}"
    server = MetricsServer(port, settings.router.metrics_host)
    _ensure_progress_topic(settings)
    worker = RouterWorker(settings, worker_name)
    worker.prepare()
    if not worker.source_topics():
        raise RouterError(
            f"the catalog on {settings.topics.catalog} names no entries: run "
            "`exchange catalog apply` first",
            code="NO_SOURCES",
        )
    output.err.print(
        f"router {worker_name}: {len(worker.source_topics())} source topic(s), "
        f"/metrics on port {server.port}"
    )
    datadir = settings.resolve(settings.router.data_dir) / worker_name
    datadir.mkdir(parents=True, exist_ok=True)
    map_large_blocks()
    app = build_app(settings, datadir)
    freeze_startup_objects()
    try:
        # Installs SIGTERM/SIGINT handlers: stop, checkpoint what was routed, exit.
        faust.Worker(app, worker, loglevel=level, quiet=True).execute_from_commandline()
    finally:
        server.close()


def _ensure_progress_topic(settings: ExchangeSettings) -> None:
    """Deployments from before backfills existed lack the topic; `catalog apply` creates it."""
    admin = Admin(settings.kafka)
    (spec,) = [
        t
        for t in control_topic_specs(settings.topics)
        if t.name == settings.topics.router_backfills
    ]
    admin.apply(
        c for c in plan_topics([spec], admin.topic_states([spec.name])) if c.action == "create"
    )
