"""Login limits as pure functions: an account locked after repeated failures, and a per-address
rate per replica.

The account lockout is shared by the replicas (on ``portal_lockouts``), so spreading guesses
over replicas gains nothing; two replicas counting the same account's failures at the same
instant may each miss the other's one (a lost update), which at most delays a lock by a
failure or two. The per-address window is each replica's own and bounds work per replica.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque

from exchange.portal.model import Lockout

__all__ = ["AddressLimiter", "after_failure", "locked_for"]


def locked_for(lockout: Lockout | None, now: dt.datetime) -> float:
    """Seconds the account stays locked (0: not locked)."""
    if lockout is None or lockout.locked_until is None:
        return 0.0
    return max(0.0, (lockout.locked_until - now).total_seconds())


def after_failure(
    lockout: Lockout | None,
    now: dt.datetime,
    max_failures: int,
    window_s: float,
    lock_s: float,
) -> Lockout:
    """The account's lockout record after one more failed login."""
    window = dt.timedelta(seconds=window_s)
    if lockout is None or now - lockout.window_start > window:
        lockout = Lockout(failures=0, window_start=now)
    failures = lockout.failures + 1
    locked_until = lockout.locked_until
    if failures >= max_failures:
        locked_until = now + dt.timedelta(seconds=lock_s)
    return Lockout(failures=failures, window_start=lockout.window_start, locked_until=locked_until)


class AddressLimiter:
    """At most ``per_minute`` failed logins per client address in any 60 s (this replica);
    successful ones are not counted (a whole department's office may share one address)."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._failed: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            failed = self._failed.get(address)
            while failed and now - failed[0] >= 60.0:
                failed.popleft()
            return failed is not None and len(failed) >= self._per_minute

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._failed.setdefault(address, deque()).append(now)
            if len(self._failed) > 100_000:  # bounded: forget idle addresses
                self._failed = {a: q for a, q in self._failed.items() if q and now - q[-1] < 60}
