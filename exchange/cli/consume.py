"""``exchange consume``: read a department's deliveries with the consumer SDK and show them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from exchange.cli import output
from exchange.cli.context import state
from exchange.client import Change, DeliveryConsumer
from exchange.kafka.admin import Admin


def consume(
    ctx: typer.Context,
    entries: Annotated[list[str], typer.Argument(help="Catalog entry id(s) to read.")],
    department: Annotated[
        str,
        typer.Option(
            "--as",
            help="The consuming department (reads its grants' topics, dlv.<DEPT>.<entry>.*).",
        ),
    ],
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group; must start with '<DEPT>.' (default <DEPT>.cli)."),
    ] = None,
    max_changes: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after this many changes.")
    ] = None,
    idle: Annotated[
        float | None,
        typer.Option(help="Stop when nothing arrived for this many seconds (default: never)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the changes delivered to a department, committing offsets as it goes."""
    settings = state(ctx).settings
    topics = Admin(settings.kafka).partition_counts()
    missing = [
        e
        for e in entries
        if not any(t.startswith(settings.topics.deliveries_of(department, e)) for t in topics)
    ]
    if missing:
        raise typer.BadParameter(
            f"no delivery topic for {', '.join(missing)}: {department} has no active grant for "
            "it yet (see `exchange grant list`)",
            param_hint="ENTRIES",
        )
    consumer: DeliveryConsumer[dict[str, Any]] = DeliveryConsumer(
        settings, department, entries, group_id=group or f"{department}.cli"
    )

    def show(change: Change[dict[str, Any]]) -> None:
        if as_json:
            # One object per line for scripts: no colours, no folding.
            print(json.dumps(_as_dict(change), ensure_ascii=False, default=str), flush=True)
            return
        fields = (
            "  ".join(f"{k}={v}" for k, v in change.value.items()) if change.value else "(deleted)"
        )
        output.out.print(
            f"[bold]{change.op}[/bold] {escape(change.key or '-')}  "
            f"[dim]grant {escape(change.grant_id or '-')}[/dim]  {escape(fields)}"
        )

    try:
        stats = consumer.run(show, max_changes=max_changes, idle_timeout_s=idle)
    except KeyboardInterrupt:
        stats = consumer.stats
    finally:
        consumer.close()
    output.err.print(
        f"{stats.handled} change(s) handled, {len(stats.undecodable)} undecodable set aside"
    )


def _as_dict(change: Change[dict[str, Any]]) -> dict[str, Any]:
    return {
        "op": change.op,
        "key": change.key,
        "value": change.value,
        "grant_id": change.grant_id,
        "event_id": change.event_id,
        "provider": change.provider,
        "ts": change.ts.isoformat() if change.ts else None,
        "source": change.source,
        "position": f"{change.topic}/{change.partition}/{change.offset}",
    }
