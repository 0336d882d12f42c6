"""``exchange grant``: request, decide, revoke and list grants."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.markup import escape

from exchange.catalog.load import load_catalog
from exchange.catalog.model import CatalogEntry
from exchange.cli import output
from exchange.cli.context import state
from exchange.cli.security import sync_after_grant_change
from exchange.grants.model import PURPOSE_LABELS, Actor, Grant, GrantRequest, Mask, Predicate
from exchange.grants.rules import effective_masks
from exchange.grants.store import GrantStore, read_grants
from exchange.security.acls import OPERATOR

app = typer.Typer(help="Grants: who receives which fields of which entry.", no_args_is_help=True)
As = Annotated[str, typer.Option("--as", help="Your department id (who acts).")]
By = Annotated[str, typer.Option("--by", help="Your name, recorded with the decision.")]
Note = Annotated[str, typer.Option(help="Reason or remark, recorded in the audit trail.")]


def _store(ctx: typer.Context, department: str, person: str) -> GrantStore:
    settings = state(ctx).settings
    security = settings.kafka.security
    if security.protocol == "SASL_SSL" and security.username != OPERATOR:
        # --as is a claim nobody checks at a shell: on the secure platform departments act
        # through the portal, which knows who is asking.
        raise typer.BadParameter(
            f"this command runs as {security.username}, not as the platform operator: on the "
            "secure platform departments request, decide and end grants in the portal "
            "(exchange portal serve), which checks who they are",
            param_hint="--as",
        )
    catalog = load_catalog(settings).require_valid()
    if department not in catalog.departments:
        raise typer.BadParameter(f"unknown department {department!r}", param_hint="--as")
    return GrantStore(settings, catalog, Actor(department=department, person=person))


def parse_filter(text: str) -> Predicate:
    """``field:op:value[,value...]``, e.g. ``region_code:prefix:1406``."""
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise typer.BadParameter(
            f"{text!r}: use field:op:value, e.g. region_code:prefix:1406", param_hint="--filter"
        )
    field, op, value = parts
    values = tuple(v for v in value.split(",")) if op == "in" else (value,)
    try:
        return Predicate.model_validate({"field": field, "op": op, "values": values})
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: {exc}", param_hint="--filter") from exc


def parse_mask(text: str) -> tuple[str, Mask]:
    """``field=hash``, ``field=redact``, ``field=none`` or ``field=keep:6:4``."""
    field, _, spec = text.partition("=")
    kind, *numbers = spec.split(":")
    try:
        if kind == "keep":
            first, last = (int(n) for n in [*numbers, "0", "0"][:2])
            return field, Mask(kind="keep", first=first, last=last)
        return field, Mask.model_validate(kind)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r}: use field=hash, field=redact, field=none or field=keep:FIRST:LAST",
            param_hint="--mask",
        ) from exc


@app.command()
def request(
    ctx: typer.Context,
    department: As,
    entry: Annotated[str, typer.Option(help="Catalog entry id.")],
    fields: Annotated[str, typer.Option(help="Comma-separated fields.")],
    purpose: Annotated[
        str, typer.Option(help="; ".join(f"{k} ({v})" for k, v in PURPOSE_LABELS.items()))
    ],
    purpose_text: Annotated[str, typer.Option(help="The concrete use.")] = "",
    legal_basis: Annotated[str, typer.Option(help="Law or document allowing the use.")] = "",
    valid_from: Annotated[
        dt.datetime | None, typer.Option("--from", help="Start (default: now).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Validity in days from the start.")] = 365,
    row_filter: Annotated[
        list[str] | None, typer.Option("--filter", help="field:op:value (eq, in, prefix).")
    ] = None,
    mask: Annotated[
        list[str] | None, typer.Option(help="field=hash|redact|none|keep:FIRST:LAST.")
    ] = None,
    grant_id: Annotated[
        str | None, typer.Option("--id", help="Grant id (default: made up).")
    ] = None,
    person: By = "",
) -> None:
    """File a request; an unconditional entry's request is approved at once."""
    start = valid_from or dt.datetime.now(dt.UTC)
    if start.tzinfo is None:
        start = start.astimezone()
    req = GrantRequest.model_validate(
        {
            "consumer": department,
            "entry": entry,
            "fields": fields,
            "purpose": purpose,
            "purpose_text": purpose_text,
            "legal_basis": legal_basis,
            "valid_from": start,
            "valid_until": start + dt.timedelta(days=days),
            "row_filter": [parse_filter(f) for f in row_filter or []],
            "masks": dict(parse_mask(m) for m in mask or []),
        }
    )
    store = _store(ctx, department, person)
    try:
        grant = store.request(req, grant_id=grant_id)
    finally:
        store.close()
    output.out.print(f"grant [bold]{grant.id}[/bold]: {grant.state}")
    if grant.state == "approved":  # unconditional entries are approved at once
        sync_after_grant_change(state(ctx).settings)


def _decide(
    ctx: typer.Context, action: str, grant_id: str, department: str, person: str, note: str
) -> None:
    store = _store(ctx, department, person)
    try:
        grant = getattr(store, action)(grant_id, note)
    finally:
        store.close()
    who = escape(str(Actor(department=department, person=person)))
    output.out.print(f"grant [bold]{grant.id}[/bold]: {grant.state} by {who}")
    sync_after_grant_change(state(ctx).settings)


@app.command()
def approve(
    ctx: typer.Context, grant_id: str, department: As, person: By = "", note: Note = ""
) -> None:
    """Approve a request (conditional entries: the provider or a platform operator)."""
    _decide(ctx, "approve", grant_id, department, person, note)


@app.command()
def reject(
    ctx: typer.Context, grant_id: str, department: As, person: By = "", note: Note = ""
) -> None:
    """Reject a request."""
    _decide(ctx, "reject", grant_id, department, person, note)


@app.command()
def revoke(
    ctx: typer.Context, grant_id: str, department: As, person: By = "", note: Note = ""
) -> None:
    """End a grant now (the router stops delivering within seconds)."""
    _decide(ctx, "revoke", grant_id, department, person, note)


@app.command("list")
def list_(
    ctx: typer.Context,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's grants.")] = None,
    entry: Annotated[str | None, typer.Option(help="Only grants of this entry.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Grants and their status now."""
    table = read_grants(state(ctx).settings)
    now = dt.datetime.now(dt.UTC)
    grants = sorted(
        (
            g
            for g in table.grants.values()
            if (consumer is None or g.request.consumer == consumer)
            and (entry is None or g.request.entry == entry)
        ),
        key=lambda g: (g.request.entry, g.request.consumer, g.id),
    )
    if as_json:
        print(
            json.dumps(
                [{**json.loads(g.model_dump_json()), "status": g.status(now)} for g in grants],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    output.table(
        f"{len(grants)} grant(s)",
        ["id", "consumer", "entry", "fields", "status", "valid until", "decided by"],
        [
            (
                g.id,
                g.request.consumer,
                g.request.entry,
                ", ".join(g.request.fields),
                g.status(now),
                g.request.valid_until.isoformat(timespec="minutes"),
                str(g.decision.by) if g.decision else "",
            )
            for g in grants
        ],
    )
    for key, why in table.unreadable.items():
        output.err.print(f"[yellow]unreadable grant {escape(key)}:[/yellow] {escape(why)}")


@app.command()
def show(ctx: typer.Context, grant_id: str) -> None:
    """One grant in full: terms, masks, decisions."""
    settings = state(ctx).settings
    grant = read_grants(settings).grants.get(grant_id)
    if grant is None:
        raise typer.BadParameter(f"no grant {grant_id!r}", param_hint="GRANT_ID")
    catalog = load_catalog(settings).catalog
    loaded = catalog.entries.get(grant.request.entry)
    output.table(f"grant {grant.id}", ["", ""], _details(grant, loaded.entry if loaded else None))


def _details(grant: Grant, entry: CatalogEntry | None) -> list[tuple[str, str]]:
    req = grant.request
    now = dt.datetime.now(dt.UTC)
    masks = effective_masks(req, entry) if entry is not None else req.masks
    rows = [
        ("status", f"{grant.status(now)} (stored state {grant.state}, revision {grant.revision})"),
        ("consumer", req.consumer),
        ("entry", req.entry),
        ("fields", ", ".join(req.fields)),
        ("masked", "; ".join(f"{k}: {m.describe()}" for k, m in masks.items()) or "none"),
        (
            "row filter",
            "; ".join(f"{p.field} {p.op} {', '.join(map(str, p.values))}" for p in req.row_filter)
            or "all rows",
        ),
        ("purpose", f"{req.purpose} ({PURPOSE_LABELS[req.purpose]}) {req.purpose_text}".strip()),
        ("legal basis", req.legal_basis or "-"),
        ("valid", f"{req.valid_from.isoformat()} .. {req.valid_until.isoformat()}"),
        (
            "requested",
            f"{grant.requested_by} at {grant.requested_at.isoformat(timespec='seconds')}",
        ),
        ("origin", grant.origin),
    ]
    if grant.decision:
        d = grant.decision
        rows.append(("decided", f"{d.by} at {d.at.isoformat(timespec='seconds')} {d.note}".strip()))
    if grant.revocation:
        r = grant.revocation
        rows.append(("revoked", f"{r.by} at {r.at.isoformat(timespec='seconds')} {r.note}".strip()))
    return rows
