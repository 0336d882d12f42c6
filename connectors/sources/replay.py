"""Replay protection for HTTP push: each request names itself and says when it was sent.

``X-Request-Id`` (the sender's unique id of the request) and ``X-Request-Time`` (Unix seconds)
are required. A request whose time is more than the window away from the connector's clock, or
whose id was already used within the window, is refused with 409 and nothing of it is
published: a captured or duplicated request sent again cannot roll a record back to an older
value. An id is taken only by a request that was accepted (202); a refused or failed one may be
sent again with the same id. Ids are remembered in memory, so a connector restarted within the
window does not know the ids used before (docs/security.md).
"""

from __future__ import annotations

import heapq
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["REQUEST_ID", "REQUEST_TIME", "Refusal", "ReplayGuard"]

REQUEST_ID = "X-Request-Id"
REQUEST_TIME = "X-Request-Time"
_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


class ReplayGuard:
    """The ids seen within the window (those in flight reserved), for one endpoint."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self._clock = clock
        #: Accepted ids -> when they may be forgotten (their request's time + the window).
        self._ids: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        #: Ids of requests in flight, with their request's time.
        self._in_flight: dict[str, float] = {}

    def admit(self, request_id: str | None, request_time: str | None) -> Refusal | None:
        """``None`` when the request may go on (its id is reserved until :meth:`settle`)."""
        now = self._clock()
        self._forget(now)
        if not request_id or not _ID.match(request_id):
            return Refusal(
                400,
                f"send a unique {REQUEST_ID} (8-128 letters, digits or ._:-) with each request",
            )
        try:
            sent = float(request_time or "")
        except ValueError:
            sent = math.nan
        if not math.isfinite(sent):
            return Refusal(400, f"send {REQUEST_TIME}: when the request was made, in Unix seconds")
        if abs(now - sent) > self.window_s:
            return Refusal(
                409,
                f"{REQUEST_TIME} is more than {self.window_s:g} s from the connector's clock: "
                f"a replay, or a clock to set right; send it again with the current time and a "
                f"new {REQUEST_ID}",
            )
        if request_id in self._ids or request_id in self._in_flight:
            return Refusal(409, f"{REQUEST_ID} {request_id} was already used: a replay")
        self._in_flight[request_id] = sent
        return None

    def settle(self, request_id: str, accepted: bool) -> None:
        """The request ended: an accepted one keeps its id, any other frees it for a resend."""
        sent = self._in_flight.pop(request_id, None)
        if accepted and sent is not None:
            expiry = sent + self.window_s
            self._ids[request_id] = expiry
            heapq.heappush(self._expiry, (expiry, request_id))

    def _forget(self, now: float) -> None:
        # Past its expiry a request is refused by its time anyway.
        while self._expiry and self._expiry[0][0] < now:
            _at, request_id = heapq.heappop(self._expiry)
            self._ids.pop(request_id, None)

    def __len__(self) -> int:
        """Ids remembered: accepted within the window, and in flight."""
        return len(self._ids) + len(self._in_flight)
