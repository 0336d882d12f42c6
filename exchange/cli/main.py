"""Entry point of the ``exchange`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from exchange import __version__
from exchange.cli import audit, catalog, connector, dev, grant, grants, output
from exchange.cli.consume import consume
from exchange.cli.context import CliState
from exchange.cli.deliveries import deliveries
from exchange.cli.monitor import monitor, status
from exchange.cli.router import router
from exchange.cli.security import acl_app, dept_app
from exchange.config import ConfigError
from exchange.errors import ExchangeError


class _Commands(TyperGroup):
    """Turns our errors into a clear message and exit 1, for every command and in tests."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            output.problems(exc.problems)
            raise typer.Exit(1) from exc
        except ExchangeError as exc:
            output.err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=_Commands,
    help="Exchange: government data sharing over Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(catalog.app, name="catalog")
app.add_typer(connector.app, name="connector")
app.add_typer(grant.app, name="grant")
app.add_typer(grants.app, name="grants")
app.add_typer(audit.app, name="audit")
app.add_typer(dept_app, name="dept")
app.add_typer(acl_app, name="acl")
app.command("router")(router)
app.command("consume")(consume)
app.command("deliveries")(deliveries)
app.command("monitor")(monitor)
app.command("status")(status)


def _version(value: bool) -> None:
    if value:
        output.out.print(f"exchange {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="exchange.yaml to use (default: $EXCHANGE_CONFIG_FILE or config/exchange.yaml).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = CliState(config=config)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
