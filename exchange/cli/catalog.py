"""``exchange catalog``: validate the catalog, apply it to the platform, list it."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

import typer

from exchange.catalog.apply import apply_catalog, catalog_record, encode_record
from exchange.catalog.load import load_catalog
from exchange.cli import output
from exchange.cli.context import state
from exchange.errors import ExchangeError
from exchange.kafka.control import read_table

app = typer.Typer(help="The data catalog (目录): entries, schemas, topics.", no_args_is_help=True)


@app.command()
def validate(ctx: typer.Context) -> None:
    """Check departments, catalog files and schemas; report every problem (no broker needed)."""
    settings = state(ctx).settings
    result = load_catalog(settings)
    if result.problems:
        output.problems(result.problems)
        raise typer.Exit(1)
    c = result.catalog
    output.out.print(
        f"[green]✓[/green] catalog valid: {len(c.entries)} entries from "
        f"{len({e.entry.provider for e in c.entries.values()})} providers, "
        f"{len(c.departments)} departments ({settings.catalog_dir})"
    )


@app.command()
def apply(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
) -> None:
    """Create topics, register schemas (BACKWARD) and publish the catalog. Idempotent."""
    settings = state(ctx).settings
    result = load_catalog(settings)
    if result.problems:
        output.problems(result.problems)
        raise typer.Exit(1)
    changes = apply_catalog(result.catalog, settings, dry_run=dry_run, progress=output.progress)
    shown = [c for c in changes if c.action != "unchanged"]
    if shown:
        output.table(
            "would change" if dry_run else "changed",
            ["kind", "name", "action", "detail"],
            [(c.kind, c.name, c.action, c.detail) for c in shown],
        )
    counts = Counter(c.action for c in changes)
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    verb = "dry run" if dry_run else "applied"
    output.out.print(f"{verb}: {summary}" if shown else f"up to date: {summary}")


@app.command("list")
def list_(
    ctx: typer.Context,
    offline: Annotated[
        bool, typer.Option("--offline", help="Only the config files; do not read the platform.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The catalog as a table, with whether each entry is applied on the platform."""
    settings = state(ctx).settings
    catalog = load_catalog(settings).require_valid()
    published: dict[str, bytes] | None = None
    if not offline:
        try:
            published = read_table(settings.kafka, settings.topics.catalog)
        except ExchangeError as exc:
            output.err.print(
                f"[yellow]platform not reachable ({exc}); showing config only[/yellow]"
            )
    rows = []
    for loaded in catalog.entries.values():
        e = loaded.entry
        if published is None:
            applied = "-"
        elif e.id not in published:
            applied = "not applied"
        elif published[e.id] == encode_record(catalog_record(loaded, settings.topics)):
            applied = "applied"
        else:
            applied = "changed, apply pending"
        dept = catalog.departments.get(e.provider)
        sensitive = [f for f, spec in e.fields.items() if spec.sensitivity == "sensitive"]
        rows.append(
            {
                "id": e.id,
                "title": e.title,
                "provider": dept.name if dept else e.provider,
                "sharing": e.sharing,
                "key": ",".join(e.key),
                "fields": f"{len(loaded.schema['fields']) if loaded.schema else 0}"
                f" ({len(sensitive)} sensitive)",
                "cycle": e.update_cycle,
                "partitions": e.partitions,
                "status": applied,
            }
        )
    if as_json:
        output.out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    output.table(
        f"catalog: {len(rows)} entries",
        ["id", "title", "provider", "sharing", "key", "fields", "cycle", "partitions", "status"],
        [tuple(r.values()) for r in rows],
    )
