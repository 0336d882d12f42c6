"""The register of audit signing keys on ``topics.audit_keys``: read it, add and retire keys.

Adding and retiring are written in one Kafka transaction with their audit event
(``audit.key.added`` / ``audit.key.retired``) on the operator's chain, so the register never
changes unaudited. Only super users (the platform operator) may write the topic: that is what
makes a registered key trustworthy.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from exchange.audit.events import Happening
from exchange.audit.signing import KeyBook, RegisteredKey, key_id, weak_public_key
from exchange.audit.writer import AuditError, AuditWriter, OutRecord
from exchange.config import ExchangeSettings
from exchange.kafka.control import read_table


@dataclass(frozen=True)
class Register:
    """The register as read: usable keys, and records that are not keys (reported, unused)."""

    book: KeyBook
    unreadable: Sequence[tuple[str, str]] = ()  # (record key, why)


def read_register(settings: ExchangeSettings) -> Register:
    """Every registered key (committed: the register is written in transactions)."""
    table = read_table(settings.kafka, settings.topics.audit_keys, committed=True)
    keys: dict[str, RegisteredKey] = {}
    bad: list[tuple[str, str]] = []
    for name, raw in table.items():
        try:
            key = RegisteredKey.from_json(raw)
        except ValueError as exc:
            bad.append((name, str(exc)))
            continue
        if key.key_id != name:
            bad.append((name, f"record key names key {key.key_id}"))
            continue
        keys[name] = key
    return Register(KeyBook(keys, dict(settings.audit.writers)), bad)


def add_key(
    settings: ExchangeSettings, writer: AuditWriter, principal: str, public_raw: bytes, by: str
) -> tuple[RegisteredKey, bool]:
    """Register ``public_raw`` as one of ``principal``'s keys; ``False`` if it already is."""
    if len(public_raw) != 32:
        raise AuditError(
            f"an Ed25519 public key is 32 bytes, this one {len(public_raw)}", code="BAD_PUBLIC_KEY"
        )
    if weak_public_key(public_raw):
        raise AuditError(
            "refused: a small-order Ed25519 key, with which a fixed signature verifies for every "
            "event; make a real one with `exchange audit keys new`",
            code="WEAK_PUBLIC_KEY",
        )
    kid = key_id(public_raw)
    known = read_register(settings).book.keys.get(kid)
    if known is not None:
        if known.principal != principal:
            raise AuditError(
                f"key {kid} is registered to {known.principal}; one key belongs to one principal",
                code="KEY_TAKEN",
            )
        return known, False
    key = RegisteredKey(kid, principal, public_raw.hex(), _now_ms(), by)
    _write(settings, writer, key, "audit.key.added", by)
    return key, True


def retire_key(settings: ExchangeSettings, writer: AuditWriter, kid: str, by: str) -> RegisteredKey:
    """From now on, events signed with ``kid`` are reported as forged."""
    key = read_register(settings).book.keys.get(kid)
    if key is None:
        raise AuditError(f"no registered key {kid}; see `exchange audit keys list`", code="NO_KEY")
    if key.retired_ms is not None:
        return key
    retired = dataclasses.replace(key, retired_ms=_now_ms())
    _write(settings, writer, retired, "audit.key.retired", by)
    return retired


def _write(
    settings: ExchangeSettings, writer: AuditWriter, key: RegisteredKey, kind: str, by: str
) -> None:
    record = OutRecord(settings.topics.audit_keys, key.key_id.encode(), key.to_json())
    details = {"key_id": key.key_id, "principal": key.principal, "public_key": key.public_key}
    if key.retired_ms is not None:
        details["retired_ms"] = str(key.retired_ms)
    writer.write([Happening(kind, by, _now_ms(), details)], with_records=[record])


def _now_ms() -> int:
    return int(time.time() * 1000)
