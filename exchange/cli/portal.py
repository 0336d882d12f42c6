"""``exchange portal``: serve the departments' API, and bootstrap its first accounts."""

from __future__ import annotations

import getpass
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer

from exchange.catalog.load import load_catalog
from exchange.cli import output
from exchange.cli.context import configure_logging, state
from exchange.config import ExchangeSettings
from exchange.portal.errors import BadRequestError, PortalError
from exchange.portal.model import account_id
from exchange.portal.service import Portal, parse_roles

app = typer.Typer(help="The departments' API and web portal.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts, for the first operator (then the portal).")
app.add_typer(accounts_app, name="accounts")


def _portal(settings: ExchangeSettings, replica: str, chain: str | None = None) -> Portal:
    return Portal(settings, load_catalog(settings).require_valid(), replica, chain=chain)


@app.command()
def serve(
    ctx: typer.Context,
    replica: Annotated[
        str | None,
        typer.Option(help="This replica's name: its audit chain is portal.<replica>."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Default: portal.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: portal.port; 0: any free.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve /api/v1 until stopped (SIGINT or SIGTERM). Any number of replicas may run: each
    answers from the platform's topics and writes on its own audit chain."""
    import uvicorn

    from exchange.portal.app import create_app

    settings = state(ctx).settings
    level = configure_logging(log_level)
    name = replica or socket.gethostname().split(".")[0]
    app_ = create_app(_portal(settings, name))
    config = uvicorn.Config(
        app_,
        host=host or settings.portal.host,
        port=settings.portal.port if port is None else port,
        log_level=level.lower(),
        access_log=level == "DEBUG",
        server_header=False,
    )
    server = uvicorn.Server(config)
    logging.getLogger(__name__).info("portal replica %s starting", name)
    server.run()


@accounts_app.command("add")
def add_account(
    ctx: typer.Context,
    department: Annotated[str, typer.Argument(help="The person's department id.")],
    username: Annotated[str, typer.Argument(help="Login name, unique in the department.")],
    roles: Annotated[
        str, typer.Option(help="Comma-separated: viewer, applicant, approver, admin, operator.")
    ],
    display_name: Annotated[str, typer.Option(help="The person's name as shown.")] = "",
    password_file: Annotated[
        Path | None,
        typer.Option(help="Read the password from this file (default: asked for)."),
    ] = None,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="An account of that name already there is fine.")
    ] = False,
) -> None:
    """Make an account from the shell: the first platform operator, or a department's first
    administrator. Whoever runs it holds the platform's configuration; it is audited as
    ``operator (shell)`` on the operator's chain security.portal-accounts."""
    settings = state(ctx).settings
    try:
        wanted = parse_roles(roles.split(","))
    except BadRequestError as exc:
        raise typer.BadParameter(exc.message, param_hint="--roles") from exc
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read it: {exc}", param_hint="--password-file"
            ) from exc
    else:
        password = getpass.getpass(f"password for {department}/{username}: ")
    # The operator's chain (audit.writers: security. is the operator's), not the portal's.
    portal = _portal(settings, "shell", chain="security.portal-accounts")
    portal.start()
    try:
        existing = portal.state.account(account_id(department, username))
        if existing is not None and exist_ok:
            output.err.print(f"{existing.id} is there already: left as it is")
            return
        account = portal.create_account(None, department, username, password, wanted, display_name)
    except PortalError as exc:
        raise typer.BadParameter(exc.message) from exc
    finally:
        portal.stop()
    output.table(
        "account made",
        ["account", "roles", "display name"],
        [[account.id, ", ".join(sorted(account.roles)), account.display_name]],
    )


@accounts_app.command("list")
def list_accounts(
    ctx: typer.Context,
    department: Annotated[str | None, typer.Argument(help="Only this department.")] = None,
) -> None:
    """Every account (or a department's), as the portal's replicas read them."""
    settings = state(ctx).settings
    portal = _portal(settings, "shell")
    portal.state.start(settings.kafka.request_timeout_s * 4)
    try:
        found = sorted(portal.state.accounts().values(), key=lambda a: a.id)
    finally:
        portal.state.stop()
    output.table(
        None,
        ["account", "roles", "display name", "disabled", "created"],
        [
            [
                a.id,
                ", ".join(sorted(a.roles)),
                a.display_name,
                "yes" if a.disabled else "",
                str(a.created_at)[:19],
            ]
            for a in found
            if department in (None, a.department)
        ],
    )
