"""``exchange dev``: the local platform."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from exchange.cli import output
from exchange.cli.context import state
from exchange.devplatform import ComponentStatus, LocalPlatform
from exchange.devplatform.platform import COMPONENTS
from exchange.devplatform.processes import tail

app = typer.Typer(
    help="The local platform: a Kafka broker and a schema registry.", no_args_is_help=True
)


def _show(statuses: list[ComponentStatus]) -> None:
    output.table(
        None,
        ["component", "state", "pid", "address", "log"],
        [(s.name, s.state, s.pid or "-", s.address, s.log) for s in statuses],
    )


@app.command()
def up(
    ctx: typer.Context,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="SASL/SCRAM over TLS with a local CA, the KRaft authorizer (nobody may do what "
            "no ACL allows) and a registry only the platform writes. Chosen when the data is "
            "first created; switching needs `dev down --purge`.",
        ),
    ] = False,
) -> None:
    """Fetch (first time only), start and wait for Kafka and the registry. Safe to repeat."""
    platform = LocalPlatform(state(ctx).settings)
    statuses = platform.up(progress=output.progress, secure_mode=secure)
    _show(statuses)
    output.out.print(
        f"Kafka bootstrap servers: [bold]{platform.bootstrap}[/bold]"
        + (" (SASL_SSL, SCRAM-SHA-512)" if platform.secure else "")
        + f"\nSchema registry (Confluent API): [bold]{platform.registry_url}[/bold]"
    )
    if platform.secure:
        env = platform.env_file("operator")
        output.out.print(
            f"Secure mode. Act as the platform operator with:\n"
            f"  [bold]set -a; . {env}; set +a[/bold]\n"
            f"then create the departments' credentials and ACLs: "
            f"`exchange dept credentials DEPT`, `exchange acl sync`."
        )


@app.command()
def down(
    ctx: typer.Context,
    purge: Annotated[
        bool, typer.Option(help="Also delete the broker's data and the logs.")
    ] = False,
) -> None:
    """Stop the processes `dev up` started (by their pid files)."""
    stopped = LocalPlatform(state(ctx).settings).down(purge=purge, progress=output.progress)
    output.out.print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    if purge:
        output.out.print("data deleted")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show whether each component is running; exit 1 if any is not."""
    statuses = LocalPlatform(state(ctx).settings).status()
    _show(statuses)
    if any(s.state != "running" for s in statuses):
        raise typer.Exit(1)


@app.command()
def logs(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument(help="kafka or registry")] = "kafka",
    lines: Annotated[int, typer.Option("--lines", "-n", min=1)] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print the last lines of a component's log."""
    if component not in COMPONENTS:
        raise typer.BadParameter(f"must be one of {', '.join(COMPONENTS)}", param_hint="COMPONENT")
    log = LocalPlatform(state(ctx).settings).log_file(component)
    if not log.exists():
        output.err.print(f"no log yet at {log}")
        raise typer.Exit(1)
    for line in tail(log, lines):
        output.out.print(line, markup=False)
    if follow:
        with log.open("rb") as f:
            f.seek(0, 2)
            while True:
                chunk = f.readline()
                if chunk:
                    output.out.print(chunk.decode("utf-8", "replace").rstrip("\n"), markup=False)
                else:
                    time.sleep(0.3)
