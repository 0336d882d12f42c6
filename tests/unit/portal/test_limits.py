"""Login limits and secrets (portal/limits.py, portal/secrets.py)."""

from __future__ import annotations

import datetime as dt

from exchange.portal.limits import AddressLimiter, after_failure, locked_for
from exchange.portal.secrets import (
    digest,
    hash_password,
    password_problem,
    same,
    split_token,
    verify_password,
)

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def test_five_failures_within_the_window_lock_the_account() -> None:
    lockout = None
    for i in range(4):
        lockout = after_failure(lockout, T0 + dt.timedelta(minutes=i), 5, 900, 900)
        assert locked_for(lockout, T0 + dt.timedelta(minutes=i)) == 0
    lockout = after_failure(lockout, T0 + dt.timedelta(minutes=4), 5, 900, 900)
    assert locked_for(lockout, T0 + dt.timedelta(minutes=5)) == 840
    assert locked_for(lockout, T0 + dt.timedelta(minutes=20)) == 0


def test_failures_spread_beyond_the_window_start_counting_again() -> None:
    lockout = after_failure(None, T0, 3, 60, 900)
    lockout = after_failure(lockout, T0 + dt.timedelta(seconds=30), 3, 60, 900)
    lockout = after_failure(lockout, T0 + dt.timedelta(seconds=90), 3, 60, 900)
    assert lockout.failures == 1 and locked_for(lockout, T0 + dt.timedelta(seconds=90)) == 0


def test_an_address_is_limited_in_failed_logins_per_minute() -> None:
    limiter = AddressLimiter(3)
    for t in (0.0, 1.0, 2.0):
        assert not limiter.blocked("10.0.0.1", now=t)
        limiter.failed("10.0.0.1", now=t)
    assert limiter.blocked("10.0.0.1", now=3.0)
    assert not limiter.blocked("10.0.0.2", now=3.0)
    assert not limiter.blocked("10.0.0.1", now=60.5)


def test_passwords_are_argon2id_and_verified_in_constant_shape() -> None:
    encoded = hash_password("长城-correct-horse-9")
    assert encoded.startswith("$argon2id$")
    assert verify_password(encoded, "长城-correct-horse-9")
    assert not verify_password(encoded, "长城-correct-horse-8")
    assert not verify_password(None, "anything at all")
    assert not verify_password("not a hash", "anything at all")


def test_weak_passwords_are_refused_with_the_reason() -> None:
    assert password_problem("short", "wang") == "a password has at least 12 characters"
    assert password_problem("wang-123456789", "wang") == "a password may not contain the username"
    assert password_problem("aaaaaaaaaaaaaaa", "wang") is not None
    assert password_problem("长城-correct-horse-9", "wang") is None


def test_tokens_are_split_and_compared_by_hash() -> None:
    assert split_token("exk_abc_secret") == ("abc", "secret")
    assert split_token("exk_secret") is None
    assert split_token("Bearer exk_a_b") is None
    assert same("secret", digest("secret")) and not same("secret2", digest("secret"))
