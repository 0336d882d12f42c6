"""`exchange audit keys` on the real broker: register, sign, rotate, retire; every change to
the register is an audit event, and `audit verify` holds writers to their registered keys."""

from __future__ import annotations

import os
import time
from pathlib import Path

from typer.testing import CliRunner

from exchange.audit.events import Happening
from exchange.audit.keys import read_register
from exchange.audit.trail import read_trail
from exchange.audit.verify import verify
from exchange.audit.writer import AuditWriter, load_key
from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.cli.main import app
from exchange.config import ExchangeSettings
from exchange.files import make_secret
from tests.integration.conftest import IsolatedProject


def cli(project: IsolatedProject, *args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, ["--config", str(project.exchange_yaml), *args], env=env)
    assert result.exit_code == 0, f"exchange {' '.join(args)}: {result.output}"
    return result.output


def signed_as(settings: ExchangeSettings, key_file: Path) -> ExchangeSettings:
    return settings.model_copy(
        update={"audit": settings.audit.model_copy(update={"signing_key_file": key_file})}
    )


def write_event(settings: ExchangeSettings, chain_id: str, n: int) -> None:
    writer = AuditWriter.connect(settings, chain_id)
    try:
        writer.write([Happening("delivery.receipt", "router", int(time.time() * 1000), {"n": n})])
    finally:
        writer.close()


def test_keys_are_registered_rotated_and_retired_with_audit_events(
    isolated: IsolatedProject, tmp_path: Path
) -> None:
    settings = isolated.settings()
    assert settings.audit.key_file is not None
    make_secret(settings.resolve(settings.audit.key_file))
    apply_catalog(load_catalog(settings).require_valid(), settings)
    old, new = tmp_path / "router-1.pem", tmp_path / "router-2.pem"
    printed = cli(isolated, "audit", "keys", "new", str(new))
    public_new = printed.split("public key: ")[1].split()[0]

    cli(isolated, "audit", "keys", "new", str(old))
    cli(isolated, "audit", "keys", "add", "router", "--private-key-file", str(old))
    # The operator signs from here on, starting with the registration of its own key.
    op_key = tmp_path / "operator.pem"
    cli(isolated, "audit", "keys", "new", str(op_key))
    env = {"EXCHANGE_AUDIT__SIGNING_KEY_FILE": str(op_key)}
    cli(isolated, "audit", "keys", "add", "operator", "--private-key-file", str(op_key), env=env)
    chain = f"router.{isolated.uid}"
    write_event(signed_as(settings, old), chain, 0)
    book = read_register(settings).book
    assert verify(read_trail(settings), load_key(settings), book).chains[chain].broken is None

    # Rotation: the new key is registered, the writer restarts with it, the old one retired.
    cli(isolated, "audit", "keys", "add", "router", "--public-key", public_new, env=env)
    write_event(signed_as(settings, new), chain, 1)
    old_id = next(k.key_id for k in book.keys.values() if k.principal == "router")
    cli(isolated, "audit", "keys", "retire", old_id, env=env)
    listed = cli(isolated, "audit", "keys", "list")
    assert old_id in listed and "router" in listed and "operator" in listed
    book = read_register(settings).book
    assert book.keys[old_id].retired_ms is not None
    result = verify(read_trail(settings), load_key(settings), book)
    assert result.intact, [c.broken for c in result.chains.values() if c.broken]

    # The retired key cannot continue the chain; the operator's key cannot write a router's.
    write_event(signed_as(settings, old), chain, 2)
    broken = verify(read_trail(settings), load_key(settings), read_register(settings).book)
    link = broken.chains[chain].broken
    assert link is not None and "after it was retired" in link.message

    events = [r.event for r in read_trail(settings) if r.event is not None]
    changes = [(e.kind, e.detail()["principal"]) for e in events if e.kind.startswith("audit.key")]
    assert changes == [
        ("audit.key.added", "router"),
        ("audit.key.added", "operator"),
        ("audit.key.added", "router"),
        ("audit.key.retired", "router"),
    ]
    assert os.stat(new).st_mode & 0o777 == 0o600
    # An operator command without its key now breaks the operator's chain: it must sign.
    cli(isolated, "audit", "keys", "retire", old_id)  # already retired: nothing written
    cli(isolated, "audit", "keys", "new", str(tmp_path / "m"))
    cli(isolated, "audit", "keys", "add", "monitor", "--private-key-file", str(tmp_path / "m"))
    unsigned = verify(read_trail(settings), load_key(settings), read_register(settings).book)
    link = unsigned.chains["security.cli"].broken
    assert link is not None and "not signed" in link.message
