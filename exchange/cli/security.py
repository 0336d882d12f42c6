"""``exchange dept credentials`` and ``exchange acl``: who may connect, and what they may do."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from exchange.audit.writer import AuditWriter
from exchange.catalog.load import load_catalog
from exchange.cli import output
from exchange.cli.context import state
from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.kafka.admin import Admin
from exchange.security.acls import ROLES, AclPlan
from exchange.security.credentials import issue
from exchange.security.errors import SecurityError
from exchange.security.sync import AclWatch, from_binding, sync_once

#: Audit chains of the security commands: one per kind of writer, so the long-running watch
#: and an operator's command never fence each other.
CLI_CHAIN = "security.cli"
WATCH_CHAIN = "security.watch"

dept_app = typer.Typer(help="Departments' principals on the broker.", no_args_is_help=True)
acl_app = typer.Typer(help="Broker ACLs derived from the catalog and grants.", no_args_is_help=True)


@dept_app.command()
def credentials(
    ctx: typer.Context,
    department: Annotated[str, typer.Argument(help="Department id (config/departments.yaml).")],
    role: Annotated[
        str,
        typer.Option(help="consumer (reads its deliveries) or connector (publishes its entries)."),
    ] = "consumer",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write <principal>.password (mode 0600) and <principal>.env there instead of "
            "showing the password.",
        ),
    ] = None,
) -> None:
    """Create or rotate a department principal's SCRAM password; shown once, never logged."""
    if role not in ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(ROLES)}", param_hint="--role")
    settings = state(ctx).settings
    _require_secure(settings)
    departments = set(load_catalog(settings).require_valid().departments)
    audit = AuditWriter.connect(settings, CLI_CHAIN)
    try:
        issued = issue(settings, department, role, audit, departments, out_dir)
    finally:
        audit.close()
    verb = "created" if issued.created else "rotated (the old password no longer works)"
    output.out.print(f"principal [bold]User:{issued.principal}[/bold]: credentials {verb}")
    if issued.files:
        output.out.print("written: " + ", ".join(str(f) for f in issued.files))
    else:
        output.out.print(
            f"password: [bold]{escape(issued.password)}[/bold]\n"
            "It is shown only this once; the broker keeps only a salted hash."
        )
    output.out.print("Its ACLs come from the catalog and its grants: run `exchange acl sync`.")


def _show(plan: AclPlan, dry_run: bool) -> None:
    rows = [("add", a.principal, a.describe()) for a in plan.add]
    rows += [("remove", a.principal, a.describe()) for a in plan.remove]
    title = "ACL changes" + (" (dry run: nothing changed)" if dry_run else "")
    if rows:
        output.table(title, ["change", "principal", "allows"], rows)
    else:
        output.out.print("ACLs already match the catalog and grants: nothing to change")
    output.out.print(
        f"{len(plan.keep)} ACL(s) already right; {plan.unmanaged} on other principals left alone"
    )


@acl_app.command()
def sync(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the difference; change nothing.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep running: sync whenever a grant is approved, revoked, starts or ends.",
        ),
    ] = False,
) -> None:
    """Add the ACLs the catalog and grants call for and remove stale ones; each change audited."""
    settings = state(ctx).settings
    _require_secure(settings)
    if dry_run:
        _show(sync_once(settings, None), dry_run=True)
        return
    if not watch:
        audit = AuditWriter.connect(settings, CLI_CHAIN)
        try:
            _show(sync_once(settings, audit), dry_run=False)
        finally:
            audit.close()
        return
    audit = AuditWriter.connect(settings, WATCH_CHAIN)
    watcher = AclWatch(settings, audit, on_change=lambda p: _show(p, dry_run=False))

    def stop(_sig: int, _frame: FrameType | None) -> None:
        watcher.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    output.progress("keeping ACLs in sync with the grants (Ctrl-C to stop)")
    try:
        watcher.run()
    finally:
        audit.close()


@acl_app.command("list")
def list_acls(
    ctx: typer.Context,
    principal: Annotated[str | None, typer.Option(help="Only this principal.")] = None,
) -> None:
    """The ACLs on the broker, by principal."""
    settings = state(ctx).settings
    _require_secure(settings)
    rows = []
    for binding in Admin(settings.kafka).acls():
        acl = from_binding(binding)
        name = acl.principal if acl else str(binding.principal)
        if principal is None or name == principal:
            rows.append((name, acl.describe() if acl else str(binding)))
    output.table("ACLs on the broker", ["principal", "allows"], sorted(rows))


def sync_after_grant_change(settings: ExchangeSettings) -> None:
    """In secure mode, bring the ACLs in line right after a grant command changed a grant.

    ``acl sync --watch`` would do it within a second; doing it here too means the change holds
    even where no watch runs. A failure leaves the grant written and says what to run.
    """
    if settings.kafka.security.protocol == "PLAINTEXT":
        return
    try:
        audit = AuditWriter.connect(settings, CLI_CHAIN)
        try:
            change = sync_once(settings, audit)
        finally:
            audit.close()
    except ExchangeError as exc:
        output.err.print(
            f"[yellow]warning:[/yellow] the grant is saved, but the ACLs were not synced: "
            f"{escape(str(exc))}; run `exchange acl sync` (or keep `acl sync --watch` running)"
        )
        return
    if not change.empty:
        output.out.print(
            f"ACLs synced: {len(change.add)} added, {len(change.remove)} removed (audited)"
        )


def _require_secure(settings: ExchangeSettings) -> None:
    if settings.kafka.security.protocol == "PLAINTEXT":
        raise SecurityError(
            "ACLs need the secure platform: the broker is reached without SASL "
            "(kafka.security.protocol is PLAINTEXT); start it with `exchange dev up --secure` "
            "and use the operator's settings",
            code="NOT_SECURE",
        )
