"""Signed audit chains: each principal signs its own chains; a verifier with the register of
public keys reports any event not signed by its chain's writer, with its position."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.audit.events import AuditEvent, Chain, Happening
from exchange.audit.signing import (
    KeyBook,
    RegisteredKey,
    Signer,
    SigningKeyError,
    chain_writer,
    key_id,
    weak_public_key,
)
from exchange.audit.verify import ChainWatch, Read, verify

WRITERS = {"router.": "router", "grants.": "operator", "connector.": "connector-{dept}"}
KeyFactory = Callable[..., tuple[Signer, RegisteredKey]]


@pytest.fixture
def make_key() -> KeyFactory:
    """A signer and its register entry: ``make_key("router", added_ms=0, retired_ms=None)``."""

    def make(
        principal: str, added_ms: int = 0, retired_ms: int | None = None
    ) -> tuple[Signer, RegisteredKey]:
        signer = Signer(Ed25519PrivateKey.generate())
        raw = signer.public_raw
        registered = RegisteredKey(
            key_id(raw), principal, raw.hex(), added_ms, "operator", retired_ms
        )
        return signer, registered

    return make


def book(*keys: RegisteredKey) -> KeyBook:
    return KeyBook({k.key_id: k for k in keys}, WRITERS)


def chain(chain_id: str, signer: Signer | None, n: int, start_ms: int = 1000) -> list[AuditEvent]:
    c = Chain(chain_id, "sha256", None, signer=signer)
    return [c.seal(Happening("grant.approved", "x", start_ms + i, {"i": i})) for i in range(n)]


def reads(evs: list[AuditEvent]) -> list[Read]:
    return [Read(f"partition 0 offset {i}", e) for i, e in enumerate(evs)]


def broken(evs: list[AuditEvent], keys: KeyBook) -> tuple[int | None, str, str] | None:
    report = verify(reads(evs), None, keys).chains[evs[0].chain_id]
    if report.broken is None:
        return None
    return report.broken.sequence, report.broken.position, report.broken.message


def forge_append(evs: list[AuditEvent], signer: Signer | None, ts_ms: int) -> list[AuditEvent]:
    """What a principal that can write the topic does: continue the chain with its own key."""
    last = evs[-1]
    c = Chain(last.chain_id, "sha256", None, last.sequence + 1, last.hash, signer)
    return [*evs, c.seal(Happening("grant.approved", "forger", ts_ms, {"forged": True}))]


def test_a_chain_signed_by_its_writer_verifies(make_key: KeyFactory) -> None:
    signer, key = make_key("operator")
    evs = chain("grants.gongan", signer, 4)
    assert all(e.signer == key.key_id and e.signature for e in evs)
    assert broken(evs, book(key)) is None


def test_an_event_appended_by_another_principal_is_forged_with_its_position(
    make_key: KeyFactory,
) -> None:
    operator, op_key = make_key("operator")
    router, router_key = make_key("router")
    evs = forge_append(chain("grants.gongan", operator, 3), router, 5000)
    seq, position, message = broken(evs, book(op_key, router_key)) or (None, "", "")
    assert (seq, position) == (3, "partition 0 offset 3")
    assert "signed by router" in message and "written by operator only" in message
    report = verify(reads(evs), None, book(op_key, router_key)).chains["grants.gongan"]
    assert report.broken is not None and report.broken.breach == "forged"


def test_unsigned_unknown_key_and_bad_signature_are_forged(make_key: KeyFactory) -> None:
    operator, op_key = make_key("operator")
    stranger, _ = make_key("consumer-mzj")
    evs = chain("grants.gongan", operator, 2)
    assert "not signed" in (broken(forge_append(evs, None, 5000), book(op_key)) or "")[2]
    assert "not registered" in (broken(forge_append(evs, stranger, 5000), book(op_key)) or "")[2]
    bad = dataclasses.replace(evs[1], signature=evs[0].signature)
    assert "signature does not match" in (broken([evs[0], bad], book(op_key)) or "")[2]


def test_a_chain_nobody_may_write_is_forged(make_key: KeyFactory) -> None:
    router, key = make_key("router")
    evs = chain("payments.x", router, 1)
    assert "no principal may write chain payments.x" in (broken(evs, book(key)) or "")[2]


def test_a_backdated_event_is_judged_by_the_brokers_time(make_key: KeyFactory) -> None:
    """The writer chooses ``ts_ms``; the broker stamps the record (LogAppendTime): an unsigned
    event dated before the operator's first key but appended after it is forged."""
    _, key = make_key("operator", added_ms=2000)
    evs = forge_append(chain("grants.gongan", None, 1, start_ms=1000), None, 1500)
    as_read = [Read(f"partition 0 offset {i}", e, appended_ms=e.ts_ms) for i, e in enumerate(evs)]
    assert verify(as_read, None, book(key)).intact
    as_read[-1] = Read("partition 0 offset 1", evs[-1], appended_ms=9000)  # appended later
    link = verify(as_read, None, book(key)).chains["grants.gongan"].broken
    assert link is not None and "not signed, though operator" in link.message


def test_once_signed_a_chain_stays_signed(make_key: KeyFactory) -> None:
    operator, key = make_key("operator", added_ms=5000)
    evs = chain("grants.gongan", operator, 2, start_ms=1000)  # signed before registration
    evs = forge_append(evs, None, 1100)
    assert "after signed events" in (broken(evs, book(key)) or "")[2]


def test_a_signer_without_a_signature_and_a_writer_without_a_key_are_forged(
    make_key: KeyFactory,
) -> None:
    operator, key = make_key("operator")
    evs = chain("grants.gongan", operator, 1)
    bare = dataclasses.replace(evs[0], signature=None)
    assert "a signer without a signature" in (broken([bare], book(key)) or "")[2]
    router_chain = chain("router.w1", None, 1)
    assert "router has no registered key" in (broken(router_chain, book(key)) or "")[2]


def test_unsigned_events_from_before_any_key_still_verify(make_key: KeyFactory) -> None:
    """A trail older than the register: events before the writer's first key need no
    signature; once it has one, they do."""
    operator, key = make_key("operator", added_ms=2000)
    old = chain("grants.gongan", None, 2, start_ms=1000)
    assert broken(forge_append(old, operator, 3000), book(key)) is None
    assert "not signed" in (broken(forge_append(old, None, 3000), book(key)) or "")[2]


def test_a_retired_key_and_a_return_to_an_older_key_are_forged(make_key: KeyFactory) -> None:
    old_signer, old_key = make_key("operator", retired_ms=4000)
    new_signer, new_key = make_key("operator", added_ms=500)
    keys = book(old_key, new_key)
    evs = chain("grants.gongan", old_signer, 2)
    assert broken(forge_append(evs, old_signer, 3999), keys) is None
    assert "after it was retired" in (broken(forge_append(evs, old_signer, 4000), keys) or "")[2]
    rotated = forge_append(evs, new_signer, 2000)
    assert broken(rotated, keys) is None
    # The stolen old key, backdated before its retirement, after the chain moved on:
    assert "older than one" in (broken(forge_append(rotated, old_signer, 2500), keys) or "")[2]


def test_without_registered_keys_signatures_are_not_asked_for(make_key: KeyFactory) -> None:
    evs = chain("grants.gongan", None, 3)
    assert verify(reads(evs), None, book()).intact


def test_the_monitors_watch_reports_the_same_forgery(make_key: KeyFactory) -> None:
    operator, op_key = make_key("operator")
    router, router_key = make_key("router")
    evs = forge_append(chain("grants.gongan", operator, 3), router, 5000)
    watch = ChainWatch(None, book(op_key, router_key))
    watch.add(reads(evs[:2]))
    watch.add(reads(evs)[2:])
    report = watch.result.chains["grants.gongan"]
    assert report.broken is not None and report.broken.sequence == 3


def test_chain_writers_by_prefix_and_department() -> None:
    assert chain_writer("router.worker-1", WRITERS) == "router"
    assert chain_writer("connector.gongan", WRITERS) == "connector-gongan"
    assert chain_writer("connector.", WRITERS) is None
    assert chain_writer("connector.gongan.x", WRITERS) is None
    assert chain_writer("other", WRITERS) is None


def test_key_files_are_made_private_and_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "router.pem"
    signer, made = Signer.create(path)
    assert made and path.stat().st_mode & 0o777 == 0o600
    again, made_again = Signer.create(path)
    assert not made_again and again.key_id == signer.key_id
    with pytest.raises(SigningKeyError, match=r"keys new"):
        Signer.load(tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(SigningKeyError, match=r"bad\.pem: not an unencrypted PEM"):
        Signer.load(tmp_path / "bad.pem")


def test_register_records_round_trip_and_refuse_a_wrong_id(make_key: KeyFactory) -> None:
    _, key = make_key("router", added_ms=7)
    assert RegisteredKey.from_json(key.to_json()) == key
    wrong = dataclasses.replace(key, key_id="0" * 32)
    with pytest.raises(ValueError, match="does not name its public key"):
        RegisteredKey.from_json(wrong.to_json())


def test_small_order_keys_are_refused_in_the_register(make_key: KeyFactory) -> None:
    """With a small-order public key a fixed signature verifies for every message."""
    weak = bytes.fromhex("01" + "00" * 31)
    assert weak_public_key(weak) and weak_public_key(bytes.fromhex("01" + "00" * 30 + "80"))
    assert not weak_public_key(make_key("router")[0].public_raw)
    record = RegisteredKey(key_id(weak), "router", weak.hex(), 0, "operator")
    with pytest.raises(ValueError, match="small-order"):
        RegisteredKey.from_json(record.to_json())
