"""``exchange deliveries``: per active grant, what its consumer has received; ``exchange
readable``: everything a consumer could read of an entry now."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from exchange.catalog.load import load_catalog
from exchange.cli import output
from exchange.cli.context import state
from exchange.routing.report import delivery_report, readable, router_backlog


def deliveries(
    ctx: typer.Context,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer department.")] = None,
    wait: Annotated[
        float,
        typer.Option(
            help="First wait up to this many seconds for the router to catch up (nothing left "
            "to route, every backfill handed over); exit 1 if it does not."
        ),
    ] = 0.0,
) -> None:
    """Per active grant: rows received, rows filtered out, fields visible and masked, a sample."""
    settings = state(ctx).settings
    catalog = load_catalog(settings).require_valid()
    if wait > 0:
        deadline = time.monotonic() + wait
        while True:
            backlog = router_backlog(settings, catalog)
            if backlog.unrouted == 0 and backlog.backfilling == 0:
                break
            if time.monotonic() >= deadline:
                output.err.print(
                    f"[red]the router has not caught up in {wait:.0f} s:[/red] "
                    f"{backlog.unrouted} record(s) to route, "
                    f"{backlog.backfilling} backfill(s) running"
                )
                raise typer.Exit(1)
            output.progress(
                f"router catching up: {backlog.unrouted} record(s) to route, "
                f"{backlog.backfilling} backfill(s) running"
            )
            time.sleep(2)
    reports = [
        r
        for r in delivery_report(settings, catalog)
        if consumer in (None, r.grant.request.consumer)
    ]
    output.table(
        "what each consumer received (current rows per delivery topic)",
        ["consumer", "entry", "grant", "rows", "filtered out", "visible", "masked", "row filter"],
        [
            (
                r.grant.request.consumer,
                r.grant.request.entry,
                r.grant.id,
                r.rows,
                f"{r.filtered_out} of {r.source_rows}",
                ", ".join(r.visible) or "-",
                "\n".join(f"{f}: {how}" for f, how in r.masked.items()) or "-",
                r.row_filter or "-",
            )
            for r in reports
        ],
    )
    for r in reports:
        if r.sample is not None:
            shown = "  ".join(f"{k}={v}" for k, v in r.sample.items())
            output.out.print(f"[bold]{r.grant.request.consumer}[/bold] sees e.g.: {shown}")
        for bad in r.undecodable:
            output.err.print(f"[yellow]undecodable delivery[/yellow] {bad}")


def readable_now(
    ctx: typer.Context,
    consumer: Annotated[str, typer.Argument(help="The consumer department.")],
    entry: Annotated[str, typer.Argument(help="Catalog entry id.")],
    key: Annotated[
        str | None, typer.Option(help="Also show this delivered key's row in each topic.")
    ] = None,
) -> None:
    """Everything CONSUMER could read of ENTRY now: each delivery topic there is for it, read
    from offset 0 (committed records, as a consumer reads), replayed into its current table."""
    settings = state(ctx).settings
    topics = readable(settings, consumer, entry)
    columns = ["topic", "rows", "fields"] + ([f"row of {key}"] if key is not None else [])
    rows = []
    for t in topics:
        fields = sorted({f for row in t.rows.values() for f in row})
        row: list[object] = [t.topic, len(t.rows), ", ".join(fields) or "-"]
        if key is not None:
            found = t.rows.get(key.encode())
            row.append("absent" if found is None else json.dumps(found, ensure_ascii=False))
        rows.append(row)
    output.table(f"what {consumer} can read of {entry} (from offset 0)", columns, rows)
    if not topics:
        output.out.print(f"nothing: no delivery topic of {consumer} on {entry}")
    for t in topics:
        for problem in t.undecodable:
            output.err.print(f"[yellow]undecodable:[/yellow] {problem}")
