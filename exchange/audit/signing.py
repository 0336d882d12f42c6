"""Who wrote an audit event: Ed25519 signatures, the platform's register of public keys, and
which principal may write which chain.

A hash chain (``events.py``) shows events changed, dropped or reordered, and an HMAC shows that
a key holder sealed them; but every holder of a shared key can write any chain. Here each
principal signs its own events with its own private key, and the platform keeps the public keys
on ``exchange.audit-keys``, a compacted topic only the platform operator (a super user) may
write. A verifier then knows, per event, *which principal* sealed it, and refuses an event in a
chain that principal may not write (``audit.writers``).

Pure but for key files; the topic's I/O is in ``audit/keys.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchange.errors import ExchangeError
from exchange.files import write_private

if TYPE_CHECKING:
    # Imported where used: `cryptography` costs a process ~5 MB, and only signers and
    # verifiers need it (the router without a signing key does not).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DEPARTMENT = re.compile(r"[a-z][a-z0-9_]*")
#: The only scheme so far. An SM2 (GB/T 32918) signer would be a second value here; the
#: ``cryptography`` package has no SM2, and a pure-Python one is not one to trust with this.
SCHEME = "ed25519"


class SigningKeyError(ExchangeError):
    """A signing key file is missing, unreadable or not an Ed25519 private key."""


#: Ed25519 public keys of small order (libsodium's blocklist, compared without the sign bit):
#: with one of them a fixed signature verifies for every message, so anyone could "sign" as the
#: principal it is registered to.
SMALL_ORDER = tuple(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


def weak_public_key(public_raw: bytes) -> bool:
    """A key of small order (or not 32 bytes): never a real principal's."""
    if len(public_raw) != 32:
        return True
    unsigned = public_raw[:31] + bytes([public_raw[31] & 0x7F])
    return any(unsigned == bad[:31] + bytes([bad[31] & 0x7F]) for bad in SMALL_ORDER)


def key_id(public_raw: bytes) -> str:
    """A key's name in events and in the register: the first 16 bytes of SHA-256 of the raw
    public key, in hex (32 characters: short for every event, and collision-free in practice)."""
    return hashlib.sha256(public_raw).hexdigest()[:32]


@dataclass(frozen=True)
class Signer:
    """A principal's private key, signing the hashes of the events it writes."""

    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return key_id(self.public_raw)

    def sign(self, event_hash: str) -> str:
        return self.private.sign(event_hash.encode("ascii")).hex()

    @classmethod
    def load(cls, path: Path, setting: str = "audit.signing_key_file") -> Signer:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise SigningKeyError(
                f"{setting} {path} does not exist; create it with `exchange audit keys new "
                f"{path}` and have the operator register it (`exchange audit keys add`)",
                code="NO_SIGNING_KEY",
            ) from exc
        except OSError as exc:
            raise SigningKeyError(
                f"cannot read {setting} {path}: {exc}", code="NO_SIGNING_KEY"
            ) from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(
                f"{setting} {path}: not an unencrypted PEM private key ({exc})",
                code="BAD_SIGNING_KEY",
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(
                f"{setting} {path}: a {type(key).__name__}, not an Ed25519 key",
                code="BAD_SIGNING_KEY",
            )
        return cls(key)

    @classmethod
    def create(cls, path: Path) -> tuple[Signer, bool]:
        """The key in ``path``, made there (owner-only) if there is none; and whether it was."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if path.exists():
            return cls.load(path), False
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem, replace=False)
        return cls(private), True


@dataclass(frozen=True)
class RegisteredKey:
    """One public key of the register: whose, since when, and until when it is honoured."""

    key_id: str
    principal: str
    public_key: str  # raw, hex
    added_ms: int
    added_by: str
    retired_ms: int | None = None
    scheme: str = SCHEME

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> RegisteredKey:
        """Raises ``ValueError`` naming what is wrong."""
        try:
            fields: Any = json.loads(raw)
            key = cls(**fields)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a registered key: {exc}") from exc
        if key.scheme != SCHEME:
            raise ValueError(f"unknown signature scheme {key.scheme!r}")
        raw = bytes.fromhex(key.public_key)
        if key_id(raw) != key.key_id:
            raise ValueError(f"key id {key.key_id} does not name its public key")
        if weak_public_key(raw):
            raise ValueError(f"key {key.key_id} is a weak (small-order) Ed25519 key")
        return key

    def verifies(self, event_hash: str, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public_key))
            public.verify(bytes.fromhex(signature), event_hash.encode("ascii"))
        except (InvalidSignature, ValueError):
            return False
        return True


def chain_writer(chain_id: str, writers: Mapping[str, str]) -> str | None:
    """The principal allowed to write ``chain_id``: the longest matching prefix of
    ``writers`` (chain-id prefix -> principal); ``None`` when no principal may write it.

    ``{dept}`` in a principal stands for the rest of the chain id, so
    ``"connector.": "connector-{dept}"`` gives chain ``connector.gongan`` to
    ``connector-gongan``.
    """
    matches = [p for p in writers if chain_id.startswith(p)]
    if not matches:
        return None
    prefix = max(matches, key=len)
    rest = chain_id[len(prefix) :]
    principal = writers[prefix]
    if "{dept}" in principal:
        # Only a department id: ``connector.gongan.x`` is nobody's chain.
        return principal.replace("{dept}", rest) if DEPARTMENT.fullmatch(rest) else None
    return principal


@dataclass(frozen=True)
class KeyBook:
    """The register as read, and who writes which chain: what :func:`verify` checks against.

    Empty (no key registered): signatures are not asked for, as on a platform without
    principals (open mode), where anyone could sign anything anyway.
    """

    keys: Mapping[str, RegisteredKey]
    writers: Mapping[str, str]

    @property
    def empty(self) -> bool:
        return not self.keys

    def first_key_ms(self, principal: str) -> int | None:
        """When ``principal`` got its first key: its events after that must be signed."""
        times = [k.added_ms for k in self.keys.values() if k.principal == principal]
        return min(times, default=None)

    def problem(
        self, chain_id: str, at_ms: int, ev_hash: str, signer: str | None, signature: str | None
    ) -> str | None:
        """Why the event's seal does not show it was written by the chain's writer, or None.

        ``at_ms``: when the event was written, by the broker's clock where the topic stamps
        records (a writer's own ``ts_ms`` could be backdated to before its first key)."""
        if self.empty:
            return None
        writer = chain_writer(chain_id, self.writers)
        if writer is None:
            return f"no principal may write chain {chain_id} (audit.writers)"
        if signer is None or signature is None:
            if signer is not None or signature is not None:
                return "a signer without a signature, or a signature without a signer"
            since = self.first_key_ms(writer)
            if since is None:
                return f"not signed, and {writer} has no registered key"
            if at_ms >= since:
                return f"not signed, though {writer} has signed its events since {since} (ms)"
            return None
        key = self.keys.get(signer)
        if key is None:
            return f"signed with key {signer}, which is not registered"
        if key.principal != writer:
            return (
                f"signed by {key.principal} (key {signer}); chain {chain_id} is written by "
                f"{writer} only"
            )
        if key.retired_ms is not None and at_ms >= key.retired_ms:
            return f"signed with key {signer} of {writer} after it was retired ({key.retired_ms})"
        if not key.verifies(ev_hash, signature):
            return f"signature does not match (key {signer} of {writer})"
        return None
