"""The grants' salts, derived in the router from a secret only the router holds.

A ``hash`` mask and a hashed delivery key are HMACs with a per-grant salt: a consumer can join
its own records, but not hashes across grants. Whoever holds a salt can enumerate a citizen ID
(18 characters, most of them predictable) back from its hash in minutes, so salts must stay with
the router. They used to travel in ``exchange.grants``, which the monitor and every operator's
view read; now ``salt = HMAC-SHA256(secret, grant id)``, where the secret is a file only the
router's host has (``router.salt_secret_file``). Every router worker of a deployment must use
the same file: a worker with another secret would hash the same key differently.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.files import make_secret, read_hex_secret

__all__ = ["GrantSalts", "SaltSecretError", "read_salts"]


class SaltSecretError(ExchangeError):
    """The router's salt secret is unreadable or malformed."""


@dataclass(frozen=True)
class GrantSalts:
    secret: bytes = field(repr=False)

    def salt(self, grant_id: str) -> bytes:
        return hmac.digest(self.secret, b"exchange grant salt\0" + grant_id.encode(), "sha256")

    @property
    def fingerprint(self) -> str:
        """Names the secret without revealing it: workers showing different ones disagree."""
        return hashlib.sha256(b"fingerprint\0" + self.secret).hexdigest()[:12]

    @classmethod
    def load(cls, settings: ExchangeSettings) -> tuple[GrantSalts, bool]:
        """The secret of ``router.salt_secret_file``; and whether it was made now.

        Made (0600) on a first start only on an open platform (one host, trials). On a secure
        one a missing file is an error: a worker that made its own secret would hash every key
        differently from the other workers, and consumers would see each record twice."""
        path = settings.resolve(settings.router.salt_secret_file)
        secure = settings.kafka.security.protocol != "PLAINTEXT"
        if secure and not path.exists():
            raise SaltSecretError(
                f"router.salt_secret_file {path} does not exist. Every router worker needs the "
                "same secret: copy the file the others use (`exchange deploy secure-files` or "
                "`exchange dev up --secure` made it), with mode 0600",
                code="NO_SALT_SECRET",
            )
        made = False if secure else make_secret(path)
        return cls(_read(path)), made


def read_salts(settings: ExchangeSettings) -> GrantSalts:
    """The router's secret for a process beside the router that must hash as it does (the
    quality worker, finding the record a consumer names by its hashed key); never made here."""
    return GrantSalts(_read(settings.resolve(settings.router.salt_secret_file)))


def _read(path: Path) -> bytes:
    where = f"router.salt_secret_file {path}"
    try:
        secret = read_hex_secret(path)
    except ValueError as exc:  # before OSError: UnicodeDecodeError is both
        if isinstance(exc, UnicodeDecodeError):
            raise SaltSecretError(f"cannot read {where}: {exc}", code="NO_SALT_SECRET") from exc
        raise SaltSecretError(f"{where}: {exc}", code="BAD_SALT_SECRET") from exc
    except OSError as exc:
        raise SaltSecretError(f"cannot read {where}: {exc}", code="NO_SALT_SECRET") from exc
    if path.stat().st_mode & 0o077:
        raise SaltSecretError(
            f"{where} is readable by others (mode {path.stat().st_mode & 0o777:o}); "
            f"`chmod 600 {path}`: whoever reads it can undo every hash mask",
            code="SALT_SECRET_EXPOSED",
        )
    return secret
