"""Entry point of the ``exchange`` command."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from exchange import __version__
from exchange.cli import output
from exchange.cli.context import CliState
from exchange.config import ConfigError
from exchange.errors import ExchangeError

#: Each command: the module and name of its Typer app (a group) or function (one command).
#: Imported only when that command runs (or ``--help`` lists them): a router worker does not
#: carry the connector's, the dev platform's (cryptography) and the other commands' modules,
#: 11 MB of its resident memory.
COMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("exchange.cli.dev", "app"),
    "deploy": ("exchange.cli.deploy", "app"),
    "catalog": ("exchange.cli.catalog", "app"),
    "connector": ("exchange.cli.connector", "app"),
    "grant": ("exchange.cli.grant", "app"),
    "grants": ("exchange.cli.grants", "app"),
    "audit": ("exchange.cli.audit", "app"),
    "dept": ("exchange.cli.security", "dept_app"),
    "acl": ("exchange.cli.security", "acl_app"),
    "router": ("exchange.cli.router", "router"),
    "consume": ("exchange.cli.consume", "consume"),
    "deliveries": ("exchange.cli.deliveries", "deliveries"),
    "readable": ("exchange.cli.deliveries", "readable_now"),
    "monitor": ("exchange.cli.monitor", "monitor"),
    "status": ("exchange.cli.monitor", "status"),
    "portal": ("exchange.cli.portal", "app"),
    "quality": ("exchange.cli.quality", "app"),
    "report": ("exchange.cli.report", "app"),
}


def load_command(name: str) -> TyperCommand | TyperGroup:
    """The command ``name`` of :data:`COMMANDS`, its module imported now."""
    module, attr = COMMANDS[name]
    target = getattr(importlib.import_module(module), attr)
    if isinstance(target, typer.Typer):
        # A group even with one subcommand (``grants apply``), as add_typer made it.
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer(add_completion=False)
    single.command(name)(target)
    command = typer.main.get_group(single).commands[name]
    assert isinstance(command, TyperCommand)
    return command


class _Commands(TyperGroup):
    """Turns our errors into a clear message and exit 1, for every command and in tests; and
    imports a command's module only when it is asked for (:data:`COMMANDS`)."""

    # ``ctx`` is typer's vendored click context, a private type: hence Any.
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in COMMANDS:
            return load_command(cmd_name)
        return super().get_command(ctx, cmd_name)

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
