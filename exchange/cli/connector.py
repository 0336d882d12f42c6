"""``exchange connector``: check and run department connectors (config/connectors/*.yaml)."""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from connectors.config import load_connector_config
from connectors.runner import Connector, check
from exchange.cli import output
from exchange.cli.context import configure_logging, state
from exchange.kafka.admin import Admin
from exchange.kafka.control import read_table
from exchange.runtime import freeze_startup_objects

app = typer.Typer(
    help="Department connectors (前置机): publish a department's data.", no_args_is_help=True
)
ConfigFile = Annotated[
    Path, typer.Argument(help="Connector file, e.g. config/connectors/gongan-population.yaml.")
]


@app.command("check")
def check_(
    ctx: typer.Context,
    file: ConfigFile,
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="Rows to preview.")] = 5,
) -> None:
    """Validate the file, reach the source and the platform, show the first rows as they would
    be published. Publishes nothing and moves nothing."""
    settings = state(ctx).settings
    config = load_connector_config(file)
    result = check(settings, config, rows)
    target = result.target
    output.out.print(
        f"[green]✓[/green] connector [bold]{config.id}[/bold] of {config.department} may publish "
        f"{target.entry.id} ({escape(target.entry.title)}) to {target.topic}, schema id "
        f"{target.codec.schema_id}"
    )
    for fact in result.facts:
        output.out.print(f"[green]✓[/green] {escape(fact)}")
    saved = json.dumps(result.saved, ensure_ascii=False) if result.saved else "none (starts fresh)"
    output.out.print(f"  saved position: {escape(saved)}")
    if result.preview:
        output.table(
            f"first {len(result.preview)} row(s) as they would be published",
            ["position", "op", "key", "record or rejection"],
            [
                (
                    p.position,
                    p.op if not p.errors else "rejected",
                    p.key or "",
                    _record_text(p.record) if not p.errors else "; ".join(map(str, p.errors)),
                )
                for p in result.preview
            ],
        )
    output.out.print("nothing was published")


def _record_text(record: dict[str, Any] | None) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) if record else ""


@app.command()
def run(
    ctx: typer.Context,
    file: ConfigFile,
    once: Annotated[
        bool,
        typer.Option("--once", help="Publish what the source has now, then stop (no watching)."),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Publish the source's changes until stopped (Ctrl-C or SIGTERM finish cleanly)."""
    configure_logging(log_level)
    settings = state(ctx).settings
    config = load_connector_config(file)
    connector = Connector(settings, config)

    def stop(signum: int, _frame: Any) -> None:
        output.progress(
            f"{signal.Signals(signum).name}: finishing in-flight records, then stopping"
        )
        connector.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    freeze_startup_objects()
    connector.run(once=once)
    publisher = connector.publisher
    output.out.print(
        f"connector {config.id}: {publisher.sent_changes} change record(s) published to "
        f"{connector.target.topic}, {publisher.sent_rejections} rejected row(s) sent to "
        f"{settings.topics.dlq}; all acknowledged"
    )
    reports = getattr(connector.source, "reports", [])
    if reports:
        output.table(
            f"{config.id}: files processed",
            ["file", "rows", "published", "rejected", "deletes", "report", "notes"],
            [
                (
                    r.file,
                    r.rows,
                    r.published,
                    r.rejected_rows,
                    r.deletes,
                    r.report_path or "",
                    "; ".join(r.notes),
                )
                for r in reports
            ],
        )


@app.command()
def positions(
    ctx: typer.Context,
    department: Annotated[
        str | None, typer.Option(help="Only this department's (the only one its principal reads).")
    ] = None,
) -> None:
    """Every connector's saved source position (from each department's offsets topic)."""
    settings = state(ctx).settings
    t = settings.topics
    if department is not None:
        topics = [t.connector_offsets_of(department)]
    else:
        every = Admin(settings.kafka).partition_counts()
        topics = sorted(n for n in every if n.startswith(t.connector_offsets_of("")))
    prefix = t.connector_offsets_of("")
    rows = [
        _position_row(topic[len(prefix) :], connector_id, raw)
        for topic in topics
        for connector_id, raw in sorted(read_table(settings.kafka, topic, committed=True).items())
    ]
    output.table(
        f"saved positions ({t.connector_offsets_of('<department>')})",
        ["department", "connector", "entry", "position", "saved"],
        rows,
    )


def _position_row(department: str, connector_id: str, raw: bytes) -> tuple[str, ...]:
    try:
        value = json.loads(raw)
        saved = dt.datetime.fromtimestamp(value["saved_at_ms"] / 1000, dt.UTC)
        return (
            department,
            connector_id,
            value.get("entry", ""),
            json.dumps(value.get("position"), ensure_ascii=False),
            saved.strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        return (department, connector_id, "", f"unreadable: {exc}", "")
