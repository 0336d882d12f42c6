"""The audit trail as departments see it in the portal: per grant, what was delivered under it
and what happened to it.

Each replica follows ``exchange.audit`` (committed events, read once from the start and then
only what is new, as the monitor does) and keeps, per grant, the records delivered, the last
delivery, the latest receipts and the grant's own events; not the events themselves (a long
trail holds millions). Until it has read the trail to its end once, the figures say so
(``caught_up``). Who may see a grant's activity is the grant's visibility (``policy.py``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from exchange.audit.events import AuditEvent
from exchange.audit.receipts import RECEIPT, receipt_rows
from exchange.audit.trail import to_read
from exchange.config import ExchangeSettings
from exchange.kafka.follow import Follower
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup

__all__ = ["GrantActivity", "TrailView"]

log = logging.getLogger(__name__)
#: Receipts and events kept per grant (the latest ones).
RECENT = 20
HISTORY = 100


@dataclass
class GrantActivity:
    """What the trail says of one grant."""

    delivered: int = 0
    receipts: int = 0
    last_delivery_ms: int | None = None
    #: The latest receipts: when, how many records, from which source offsets, to which topic.
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    #: The grant's own events: requested, approved, rejected, revoked, delivery started ...
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def view(self, caught_up: bool) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "receipts": self.receipts,
            "last_delivery_ms": self.last_delivery_ms,
            "recent": list(reversed(self.recent)),
            "history": list(self.history),
            "caught_up": caught_up,
        }


class TrailView:
    """Follows the audit topic in a thread. No network until :meth:`start`."""

    def __init__(self, settings: ExchangeSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._grants: dict[str, GrantActivity] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="portal-trail", daemon=True)
        #: The trail was read to its end at least once.
        self.caught_up = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)

    def activity(self, grant_id: str) -> dict[str, Any]:
        with self._lock:
            found = self._grants.get(grant_id) or GrantActivity()
            return found.view(self.caught_up)

    def delivered(self) -> dict[str, int]:
        """Records delivered per grant."""
        with self._lock:
            return {g: a.delivered for g, a in self._grants.items()}

    def _run(self) -> None:
        s = self._settings
        lookup = SchemaLookup(Registry(s.registry).schema_by_id)
        follower = Follower(s.kafka, s.topics.audit, committed=True)
        try:
            while not self._stop.is_set():
                try:
                    reads = [to_read(lookup, m) for m in follower.read_new(2.0)]
                except Exception as exc:  # report and go on: the pages say it is behind
                    log.warning("following the audit trail: %s; again in 5 s", exc)
                    self._stop.wait(5)
                    continue
                with self._lock:
                    for read in reads:
                        event = read.event
                        # A receipt names its grants in its rows (one event per consumer).
                        if event is not None and (event.grant_id or event.kind == RECEIPT):
                            self._add(event)
                    self.caught_up = self.caught_up or follower.caught_up
                if not reads:
                    self._stop.wait(1.0)
        finally:
            follower.close()

    def _add(self, event: AuditEvent) -> None:
        if event.kind == RECEIPT:
            for row in receipt_rows(event):
                activity = self._grants.setdefault(row.grant_id, GrantActivity())
                activity.delivered += row.count
                activity.receipts += 1
                activity.last_delivery_ms = max(activity.last_delivery_ms or 0, event.ts_ms)
                activity.recent.append(
                    {
                        "ts_ms": event.ts_ms,
                        "records": row.count,
                        "source": f"{row.source_topic}[{row.partition}] "
                        f"{row.first_offset}..{row.last_offset}",
                        "delivery_topic": row.delivery_topic,
                    }
                )
            return
        if event.grant_id is None:
            return
        try:
            details = json.loads(event.details)
        except ValueError:
            details = {}
        activity = self._grants.setdefault(event.grant_id, GrantActivity())
        activity.history.append(
            {
                "ts_ms": event.ts_ms,
                "kind": event.kind,
                "actor": event.actor,
                "note": str(details.get("note", "") or details.get("why", "") or ""),
            }
        )
