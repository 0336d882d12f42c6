"""``exchange report``: reports for the platform's operators (监督考核)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from exchange.catalog.load import load_catalog
from exchange.cli import output
from exchange.cli.context import state
from exchange.quality.assessment import parse_period
from exchange.quality.report import COLUMNS, as_csv, as_html, cells, gather_assessment

app = typer.Typer(help="Reports for the platform's operators.", no_args_is_help=True)
FORMATS = ("table", "csv", "html")


@app.command()
def assessment(
    ctx: typer.Context,
    period: Annotated[
        str, typer.Option(help="A quarter (2026Q4), a month (2026-11) or a year (2026).")
    ],
    format_: Annotated[
        str, typer.Option("--format", help="table, csv or html (prints cleanly).")
    ] = "table",
    out: Annotated[
        Path | None, typer.Option(help="Write to this file (default: the terminal).")
    ] = None,
) -> None:
    """Each department's collection and sharing work over the period, and the ranking:
    entries with data (归集率), timeliness, quality score, requests decided and how fast,
    objections resolved and how fast, records shared (docs/quality.md)."""
    settings = state(ctx).settings
    if format_ not in FORMATS:
        raise typer.BadParameter(f"one of {', '.join(FORMATS)}", param_hint="--format")
    try:
        when = parse_period(period, settings.quality.utc_offset_hours)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--period") from exc
    catalog = load_catalog(settings).require_valid()
    departments = {d.id: d.name for d in catalog.departments.values()}
    rows = gather_assessment(settings, when, departments, output.progress)
    if format_ == "table":
        table = output.make_table(
            f"数据归集共享工作考核 {when.label}",
            # The Chinese headings only: the terminal is narrow (CSV and HTML have both).
            [h.split(" ")[0] for h, _n in COLUMNS],
            [cells(r) for r in rows],
        )
        if out is None:
            output.out.print(table)
            return
        text = _plain(table)
    elif format_ == "csv":
        text = as_csv(rows)
    else:
        text = as_html(rows, when, dt.datetime.now(dt.UTC))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        output.err.print(f"wrote {out}")


def _plain(table: Table) -> str:
    """The table as text, for a file (no colours, wide enough not to fold)."""
    console = Console(width=220, no_color=True)
    with console.capture() as captured:
        console.print(table)
    return captured.get()
