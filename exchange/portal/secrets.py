"""Passwords, session ids, CSRF and API tokens: made random, stored only as hashes.

Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended option: 64 MiB,
3 passes, 4 lanes; about 60 ms per hash on this machine's cores), so a stolen accounts topic
costs an attacker that much per guess and per account. Session ids, CSRF and API tokens are
256 random bits, stored as SHA-256: unguessable, so a fast hash suffices, and a lookup is a
dictionary hit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MIN_PASSWORD_CHARS",
    "TOKEN_PREFIX",
    "digest",
    "hash_password",
    "new_secret",
    "password_problem",
    "same",
    "split_token",
    "verify_password",
]

MIN_PASSWORD_CHARS = 12
TOKEN_PREFIX = "exk_"
_HASHER = PasswordHasher()
#: Verified against when the account does not exist, so a wrong username costs as long as a
#: wrong password (no telling which accounts exist by timing).
_DECOY = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches; ``encoded`` ``None`` (no such account) takes as long."""
    try:
        return _HASHER.verify(encoded or _DECOY, password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str, username: str) -> str | None:
    """Why a new password is refused, or ``None``."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"a password has at least {MIN_PASSWORD_CHARS} characters"
    if username.lower() in password.lower():
        return "a password may not contain the username"
    if len(set(password)) < 5:
        return "a password needs at least 5 different characters"
    return None


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What is stored of a secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same(secret: str, stored_digest: str) -> bool:
    """``secret`` hashes to ``stored_digest`` (compared in constant time)."""
    return hmac.compare_digest(digest(secret), stored_digest)


def split_token(token: str) -> tuple[str, str] | None:
    """``(token id, secret)`` of an API token ``exk_<id>_<secret>``, or ``None``."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not token_id or not secret:
        return None
    return token_id, secret
