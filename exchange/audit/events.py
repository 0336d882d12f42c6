"""Audit events and their hash chain.

Every writer (a router worker, the grant CLI of one department, ...) owns a chain: its events are
numbered from 0 without gaps and each carries the hash of its predecessor. The hash covers every
other field in a canonical JSON form, so it can be recomputed from the decoded event whatever the
bytes on the topic. With an audit key the hash is an HMAC: without the key nobody can forge an
event that verifies, not even one appended at the end of a chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from exchange.audit.signing import Signer

Algorithm = Literal["sha256", "sm3"]
GENESIS = "0" * 64
ALGORITHMS = ("sha256", "sm3", "hmac-sha256", "hmac-sm3")


@dataclass(frozen=True)
class AuditEvent:
    chain_id: str
    sequence: int
    prev_hash: str
    hash: str
    algorithm: str
    ts_ms: int
    kind: str
    actor: str
    entry: str | None
    consumer: str | None
    grant_id: str | None
    details: str
    #: The registered key that signed ``hash`` (``audit/signing.py``), and the signature (hex).
    signer: str | None = None
    signature: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> AuditEvent:
        fields = dict(record)
        ts = fields["ts_ms"]
        # fastavro reads timestamp-millis back as a datetime.
        if not isinstance(ts, int):
            fields["ts_ms"] = int(ts.timestamp() * 1000)
        return cls(**fields)

    def detail(self) -> dict[str, Any]:
        value = json.loads(self.details)
        return value if isinstance(value, dict) else {"value": value}


@dataclass(frozen=True)
class Happening:
    """What a writer records; the chain adds sequence, links and hash."""

    kind: str
    actor: str
    ts_ms: int
    details: Mapping[str, Any]
    entry: str | None = None
    consumer: str | None = None
    grant_id: str | None = None


def canonical_details(details: Mapping[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def event_hash(event: AuditEvent, key: bytes | None) -> str:
    """The hash of every field but ``hash`` and ``signature`` (which signs the hash), by the
    event's own algorithm. ``signer`` is covered when there is one, and left out when there is
    none, so events written before signatures keep their hashes."""
    fields = asdict(event)
    del fields["hash"], fields["signature"]
    if fields["signer"] is None:
        del fields["signer"]
    body = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    data = body.encode("utf-8")
    algorithm = event.algorithm
    if algorithm.startswith("hmac-"):
        if key is None:
            raise ValueError("event is sealed with an audit key, and no key was given")
        return hmac.new(key, data, _digest(algorithm[5:])).hexdigest()
    return hashlib.new(_digest(algorithm), data).hexdigest()


def _digest(name: str) -> str:
    if name not in ("sha256", "sm3"):
        raise ValueError(f"unknown audit hash algorithm {name!r}")
    # SM3 (GB/T 32905) comes from OpenSSL through hashlib; checked at start by `check_algorithm`.
    return name


def check_algorithm(algorithm: Algorithm) -> None:
    """Fail early where the local OpenSSL has no SM3."""
    try:
        hashlib.new(algorithm, b"")
    except ValueError as exc:
        raise ValueError(f"this Python's OpenSSL has no {algorithm}: {exc}") from exc


class Chain:
    """The writing end of one chain: numbers, links and seals events in order."""

    def __init__(
        self,
        chain_id: str,
        algorithm: Algorithm,
        key: bytes | None,
        next_sequence: int = 0,
        last_hash: str = GENESIS,
        signer: Signer | None = None,
    ) -> None:
        check_algorithm(algorithm)
        self._signer = signer
        self.chain_id = chain_id
        self.algorithm = f"hmac-{algorithm}" if key is not None else algorithm
        self._key = key
        self.next_sequence = next_sequence
        self.last_hash = last_hash

    def seal(self, happening: Happening) -> AuditEvent:
        unsealed = AuditEvent(
            chain_id=self.chain_id,
            sequence=self.next_sequence,
            prev_hash=self.last_hash,
            hash="",
            algorithm=self.algorithm,
            ts_ms=happening.ts_ms,
            kind=happening.kind,
            actor=happening.actor,
            entry=happening.entry,
            consumer=happening.consumer,
            grant_id=happening.grant_id,
            details=canonical_details(happening.details),
            signer=None if self._signer is None else self._signer.key_id,
        )
        sealed = event_hash(unsealed, self._key)
        signature = None if self._signer is None else self._signer.sign(sealed)
        event = AuditEvent(**{**asdict(unsealed), "hash": sealed, "signature": signature})
        self.next_sequence += 1
        self.last_hash = event.hash
        return event

    def rewind(self, next_sequence: int, last_hash: str) -> None:
        """Back to a known state, after events sealed but not written were given up."""
        self.next_sequence = next_sequence
        self.last_hash = last_hash
