"""``exchange grants apply``: make ``exchange.grants`` match ``config/grants/*.yaml``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from exchange.catalog.load import load_catalog
from exchange.cli import output
from exchange.cli.context import state
from exchange.cli.security import sync_after_grant_change
from exchange.config import ConfigError
from exchange.grants.declared import apply_steps, load_declared, plan_declared
from exchange.grants.model import Actor
from exchange.grants.store import read_grants

app = typer.Typer(help="Declarative grants (config/grants/*.yaml).", no_args_is_help=True)


@app.command()
def apply(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help="Your name, recorded with each change.")],
    department: Annotated[
        str | None,
        typer.Option("--as", help="Operator department applying (default: grants.operators[0])."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
) -> None:
    """Request, amend, approve and revoke grants so the topic matches the files; idempotent."""
    settings = state(ctx).settings
    catalog = load_catalog(settings).require_valid()
    operators = settings.grants.operators
    acting = department or (operators[0] if operators else None)
    if acting is None or acting not in operators:
        raise typer.BadParameter(
            f"{acting!r} is not a platform operator (grants.operators: {', '.join(operators)})",
            param_hint="--as",
        )
    declared, problems = load_declared(settings, catalog)
    if problems:
        raise ConfigError(problems)
    steps = plan_declared(declared, read_grants(settings), dt.datetime.now(dt.UTC))
    if not dry_run:
        steps = apply_steps(settings, catalog, steps, Actor(department=acting, person=by))
    output.table(
        f"grants declared in {settings.grants_dir}"
        + (" (dry run: nothing changed)" if dry_run else ""),
        ["grant", "consumer", "entry", "changes", "state"],
        [(s.grant_id, s.consumer, s.entry, ", ".join(s.actions) or "-", s.note) for s in steps],
    )
    if not dry_run and any(s.actions for s in steps):
        sync_after_grant_change(settings)
    conflicts = [s for s in steps if s.note.startswith("CONFLICT")]
    if conflicts:
        raise typer.Exit(1)
