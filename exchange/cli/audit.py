"""``exchange audit``: verify the hash chains, ask who received what, follow the trail."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import OFFSET_END, TopicPartition
from rich.markup import escape

from exchange.audit.events import AuditEvent
from exchange.audit.keys import add_key, read_register, retire_key
from exchange.audit.receipts import RECEIPT, receipt_rows
from exchange.audit.signing import RegisteredKey, Signer
from exchange.audit.trail import Query, query, read_trail, to_read
from exchange.audit.verify import verify
from exchange.audit.writer import AuditWriter, load_key
from exchange.cli import output
from exchange.cli.context import state
from exchange.files import make_secret
from exchange.kafka.control import partitions, reader, to_message
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup

app = typer.Typer(help="The audit trail (日志审计).", no_args_is_help=True)
keys_app = typer.Typer(
    help="The principals' audit signing keys (Ed25519) and their register.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
#: The operator's chain for changes to the key register (as `exchange dept credentials`).
KEYS_CHAIN = "security.cli"
Topic = Annotated[str | None, typer.Option(help="Audit topic (default: topics.audit).")]


@app.command()
def keygen(ctx: typer.Context) -> None:
    """Create the HMAC key that seals audit events (audit.key_file), if it does not exist."""
    settings = state(ctx).settings
    if settings.audit.key_file is None:
        raise typer.BadParameter("audit.key_file is not set in the configuration")
    path = settings.resolve(settings.audit.key_file)
    made = make_secret(path)
    output.out.print(f"{'created' if made else 'kept existing'} audit key {path}")


@app.command("verify")
def verify_(ctx: typer.Context, topic: Topic = None) -> None:
    """Check every chain; report the first broken link (changed, missing, reordered, forged)."""
    settings = state(ctx).settings
    register = read_register(settings)
    for name, why in register.unreadable:
        output.err.print(
            f"[yellow]{settings.topics.audit_keys} record {name!r} ignored:[/yellow] {why}"
        )
    reads = read_trail(settings, topic)
    result = verify(reads, load_key(settings), register.book)
    if not result.signatures_checked:
        output.err.print(
            f"[yellow]signatures NOT checked: no key is registered on "
            f"{settings.topics.audit_keys} (open mode); anyone able to write the trail could "
            "have written any chain[/yellow]"
        )
    if result.writer_timed:
        output.err.print(
            f"[yellow]{result.writer_timed} event(s) carry only their writer's time (the topic "
            "does not stamp records with the broker's: `exchange catalog apply` sets "
            "message.timestamp.type=LogAppendTime); key validity was judged by it[/yellow]"
        )
    rows = []
    for chain in sorted(result.chains.values(), key=lambda c: c.chain_id):
        broken = chain.broken
        rows.append(
            (
                chain.chain_id,
                str(chain.events),
                "-" if chain.last_sequence is None else str(chain.last_sequence),
                "intact"
                if broken is None
                else f"BROKEN: {broken.breach} at {broken.position} "
                f"(sequence {broken.sequence}): {broken.message}",
            )
        )
    output.table(
        f"audit chains on {topic or settings.topics.audit}",
        ["chain", "events", "last sequence", "state"],
        rows,
    )
    for u in result.unreadable:
        output.out.print(f"[red]unreadable record at {u.position}:[/red] {escape(u.message)}")
    if not result.intact:
        output.err.print("[red]audit trail NOT intact[/red]")
        raise typer.Exit(2)
    output.out.print(
        f"[green]audit trail intact:[/green] {result.events} event(s) "
        f"in {len(result.chains)} chain(s)"
    )


@app.command("query")
def query_(
    ctx: typer.Context,
    consumer: Annotated[str | None, typer.Option(help="Consumer department.")] = None,
    entry: Annotated[str | None, typer.Option(help="Catalog entry id.")] = None,
    grant_id: Annotated[str | None, typer.Option("--grant", help="Grant id.")] = None,
    kind: Annotated[str | None, typer.Option(help="Event kind or prefix, e.g. delivery.")] = None,
    since: Annotated[dt.datetime | None, typer.Option(help="Only events from this time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Who received what, when, under which grant (and every other kind of event)."""
    settings = state(ctx).settings
    if since is not None and since.tzinfo is None:
        since = since.astimezone()
    asked = Query(consumer, entry, grant_id, kind, since)
    events = query(read_trail(settings), asked)
    if as_json:
        for e in events:
            print(json.dumps({**e.to_avro(), "details": e.detail()}, ensure_ascii=False))
        return
    output.table(
        f"{len(events)} audit event(s)",
        ["time", "kind", "consumer", "entry", "grant", "details"],
        [row for e in events for row in _rows(e, asked)],
    )


def _rows(e: AuditEvent, asked: Query | None = None) -> list[tuple[str, ...]]:
    """Table rows of an event: one per receipt row (those ``asked`` for), else one."""
    when = _when(e.ts_ms)
    if e.kind == RECEIPT:
        return [
            (
                when,
                e.kind,
                e.consumer or "",
                r.entry,
                r.grant_id,
                f"{r.count} record(s) from {r.source_topic}[{r.partition}] offsets "
                f"{r.first_offset}..{r.last_offset}, sha256 {r.sha256[:12]}…",
            )
            for r in receipt_rows(e)
            if asked is None or asked.matches_row(r)
        ]
    d = e.detail()
    if e.kind in ("record.rejected", "delivery.refused"):
        text = f"{d['reason']} at {d['position']}"
    elif e.kind.startswith("acl."):
        star = "*" if d.get("pattern") == "PREFIXED" else ""
        what = f"{d.get('operation')} {d.get('resource')} {d.get('name')}{star}"
        text = f"{d.get('principal')}: {what}"
    elif e.kind.startswith("credentials."):
        text = f"{d.get('principal')} ({d.get('mechanism')})"
    else:
        text = json.dumps(
            {k: v for k, v in d.items() if k in ("state", "why", "fields", "note")},
            ensure_ascii=False,
        )
    return [(when, e.kind, e.consumer or "", e.entry or "", e.grant_id or "", text)]


@app.command()
def tail(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = True,
    last: Annotated[int, typer.Option(help="Events to show first.")] = 20,
) -> None:
    """Show the latest events, then follow the trail as it is written."""
    settings = state(ctx).settings
    reads = read_trail(settings)
    for r in reads[-last:]:
        output.out.print(
            _line(r.event) if r.event else f"[red]unreadable[/red] {r.position}: {escape(r.error)}"
        )
    if not follow:
        return
    lookup = SchemaLookup(Registry(settings.registry).schema_by_id)
    consumer = reader(settings.kafka, committed=True)
    topic = settings.topics.audit
    numbers = partitions(consumer, topic, settings.kafka.request_timeout_s)
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in numbers])
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            r = to_read(lookup, to_message(msg))
            output.out.print(_line(r.event) if r.event else f"[red]unreadable[/red] {r.position}")
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _line(e: AuditEvent) -> str:
    return "\n".join(
        escape(
            f"{when} {e.chain_id}#{e.sequence} {kind} consumer={consumer or '-'} "
            f"entry={entry or '-'} grant={grant or '-'} {text}"
        )
        for when, kind, consumer, entry, grant, text in _rows(e)
    )


@keys_app.command("new")
def keys_new(
    path: Annotated[Path, typer.Argument(help="Where to keep the private key (PEM, mode 0600).")],
) -> None:
    """Make a signing key (run by the key's owner, on its host); prints the public key, which
    the operator registers with `exchange audit keys add`."""
    signer, made = Signer.create(path)
    output.out.print(f"{'created' if made else 'kept existing'} signing key {path}")
    output.out.print(f"public key: {signer.public_raw.hex()}  (key id {signer.key_id})")


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="Whose key: router, operator, connector-x...")],
    public_key: Annotated[
        str | None, typer.Option(help="The public key, hex, as `audit keys new` printed it.")
    ] = None,
    private_key_file: Annotated[
        Path | None,
        typer.Option(help="Or the principal's private key file on this host (it must exist)."),
    ] = None,
    by: Annotated[str, typer.Option(help="Who registers it (for the audit event).")] = "operator",
) -> None:
    """Register a principal's public key; its events signed with it verify from now on.
    Rotation: add the new key, restart the principal's processes with it, retire the old one."""
    if (public_key is None) == (private_key_file is None):
        raise typer.BadParameter("give exactly one of --public-key and --private-key-file")
    if private_key_file is not None:
        raw = Signer.load(private_key_file, "--private-key-file").public_raw
    else:
        try:
            raw = bytes.fromhex(public_key or "")
        except ValueError as exc:
            raise typer.BadParameter(f"not hex: {exc}", param_hint="--public-key") from exc
    settings = state(ctx).settings
    writer = AuditWriter.connect(settings, KEYS_CHAIN)
    try:
        key, added = add_key(settings, writer, principal, raw, by)
    finally:
        writer.close()
    if key.retired_ms is not None:
        output.err.print(
            f"[red]key {key.key_id} of {principal} was retired at {_when(key.retired_ms)}; "
            "a retired key is not registered again: make a new one (`audit keys new`)[/red]"
        )
        raise typer.Exit(1)
    what = "registered" if added else "already registered"
    output.out.print(f"{what}: key {key.key_id} of {principal}")


@keys_app.command("retire")
def keys_retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Key id (`exchange audit keys list`).")],
    by: Annotated[str, typer.Option(help="Who retires it (for the audit event).")] = "operator",
) -> None:
    """Stop honouring a key: events it signs from now on are reported as forged."""
    settings = state(ctx).settings
    writer = AuditWriter.connect(settings, KEYS_CHAIN)
    try:
        key = retire_key(settings, writer, key_id, by)
    finally:
        writer.close()
    output.out.print(f"key {key.key_id} of {key.principal} retired at {_when(key.retired_ms)}")


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Every registered key: whose, since when, retired when."""
    settings = state(ctx).settings
    register = read_register(settings)
    output.table(
        f"audit signing keys on {settings.topics.audit_keys}",
        ["principal", "key id", "added", "by", "retired"],
        [_key_row(k) for k in sorted(register.book.keys.values(), key=_key_order)],
    )
    for name, why in register.unreadable:
        output.err.print(f"[yellow]record {name!r} ignored:[/yellow] {why}")


def _key_order(key: RegisteredKey) -> tuple[str, int]:
    return key.principal, key.added_ms


def _key_row(key: RegisteredKey) -> tuple[str, ...]:
    retired = "-" if key.retired_ms is None else _when(key.retired_ms)
    return key.principal, key.key_id, _when(key.added_ms), key.added_by, retired


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).astimezone().isoformat(timespec="seconds")
