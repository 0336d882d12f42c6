"""Which grants the router delivers under, and the catalog entries they deliver from.

:class:`GrantTable` follows the grant book and the published catalog. Preparing grants that
start (their delivery topics and schemas) blocks on the broker and the registry, so it is split
from applying them: :meth:`GrantTable.prepare` runs in an executor, :meth:`GrantTable.apply`
swaps the routing tables at once in the event loop, between two batches. A grant whose delivery
topic or schema cannot be made yet (the registry is down) waits and is tried again at the next
refresh; every other grant goes on routing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from exchange.audit.events import Happening
from exchange.catalog.published import PublishedCatalog, PublishedCatalogEntry, read_published
from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.grants.book import GrantBook
from exchange.grants.model import GrantTerms
from exchange.kafka.admin import Admin
from exchange.kafka.control import end_marks
from exchange.kafka.registry import Registry
from exchange.routing import metrics
from exchange.routing.core import ActiveGrant, EntryRoute, Router
from exchange.routing.deliveries import prepare_deliveries
from exchange.routing.salts import GrantSalts

__all__ = ["GrantTable", "Prepared"]

log = logging.getLogger(__name__)
#: A grant that could not be prepared is tried again after this long.
RETRY_PREPARE_S = 5.0


@dataclass
class Prepared:
    """The outcome of :meth:`GrantTable.prepare`, applied by :meth:`GrantTable.apply`."""

    version: int
    active: dict[str, ActiveGrant]
    happenings: list[Happening]
    next_change: dt.datetime | None
    #: Grants that should deliver but could not be prepared, with why.
    waiting: dict[str, str] = field(default_factory=dict)


class GrantTable:
    """Grant book and catalog in, the core's routing tables out."""

    def __init__(
        self, settings: ExchangeSettings, core: Router, actor: str, salts: GrantSalts
    ) -> None:
        self.settings = settings
        self.salts = salts
        self.core = core
        self.actor = actor
        self.book = GrantBook(settings)
        self.admin = Admin(settings.kafka)
        self.catalog = PublishedCatalog(entries={}, unreadable=[])
        #: The catalog topic's end offsets when it was read; re-read only when they moved.
        self.catalog_marks: object = None
        self.active: dict[str, ActiveGrant] = {}
        self._seen_version = -1
        self._next_change: dt.datetime | None = None
        #: Grants waiting to be prepared, by id: why, and when to try again.
        self.waiting: dict[str, tuple[str, dt.datetime]] = {}

    # -- catalog -----------------------------------------------------------------------------

    def load_catalog(self) -> bool:
        """Blocking: re-read the published catalog if its topic was written since; ``True``
        when routes changed. A new entry is routed from its next record on."""
        marks = end_marks(self.settings.kafka, self.settings.topics.catalog)
        if marks == self.catalog_marks:
            return False
        catalog = read_published(self.settings)
        self.catalog_marks = marks
        for entry_id, why in catalog.unreadable:
            log.error("catalog entry %s skipped: %s", entry_id, why)
        changed = False
        for published in catalog.entries.values():
            old = self.catalog.entries.get(published.entry.id)
            if old is not None and old == published:
                continue
            self.core.set_entry(
                published.source_topic, EntryRoute(published.entry, published.record_schema)
            )
            changed = True
        self.catalog = catalog
        if changed:
            # A grant may name an entry that was missing before.
            self._seen_version = -1
        return changed

    def knows(self, topic: str) -> bool:
        return topic in self.core.routes

    # -- grants ------------------------------------------------------------------------------

    def due(self, now: dt.datetime) -> bool:
        return (
            self.book.version != self._seen_version
            or (self._next_change is not None and now >= self._next_change)
            or any(now >= when for _, when in self.waiting.values())
        )

    def prepare(self, now: dt.datetime) -> Prepared:
        """Blocking part (topics, schemas): which grants deliver as of ``now``."""
        version, grants = self.book.snapshot()
        ts_ms = int(now.timestamp() * 1000)
        active: dict[str, ActiveGrant] = {}
        happenings: list[Happening] = []
        upcoming: list[dt.datetime] = []
        starting: list[tuple[GrantTerms, PublishedCatalogEntry]] = []
        for grant in grants.values():
            status = grant.status(now)
            if grant.state == "approved":
                if status == "pending":
                    upcoming.append(grant.valid_from)
                elif status == "active":
                    upcoming.append(grant.valid_until)
            if status != "active":
                continue
            published = self.catalog.entries.get(grant.entry)
            if published is None:
                log.warning("grant %s names entry %s, not in the catalog", grant.id, grant.entry)
                continue
            current = self.active.get(grant.id)
            if current is not None and current.plan.grant == grant:
                active[grant.id] = current
                continue
            starting.append((grant, published))
        waiting: dict[str, str] = {}
        for grant_id, ready in self._prepare_starting(starting, waiting).items():
            active[grant_id] = ready
            happenings.append(
                _delivery_event("delivery.started", ready.plan.grant, self.actor, ts_ms, "active")
            )
        for grant_id, gone in self.active.items():
            if grant_id not in active or active[grant_id].plan.grant != gone.plan.grant:
                if grant_id in waiting:
                    # Amended, and the new terms cannot be prepared yet: stop the old ones.
                    why = "amended"
                else:
                    latest = grants.get(grant_id)
                    why = latest.status(now) if latest is not None else "withdrawn"
                    if latest is not None and latest.state == "approved" and why == "active":
                        why = "amended"
                happenings.append(
                    _delivery_event("delivery.stopped", gone.plan.grant, self.actor, ts_ms, why)
                )
        return Prepared(version, active, happenings, min(upcoming, default=None), waiting)

    def _prepare_starting(
        self,
        starting: list[tuple[GrantTerms, PublishedCatalogEntry]],
        waiting: dict[str, str],
    ) -> dict[str, ActiveGrant]:
        """Prepare all together; when that fails, one by one, so one grant's trouble (its
        schema cannot be registered, the registry is down) keeps only that grant waiting."""
        if not starting:
            return {}
        try:
            return self._prepare(starting)
        except ExchangeError as exc:
            if len(starting) == 1:
                waiting[starting[0][0].id] = str(exc)
                return {}
        out: dict[str, ActiveGrant] = {}
        for one in starting:
            try:
                out.update(self._prepare([one]))
            except ExchangeError as exc:
                waiting[one[0].id] = str(exc)
        return out

    def _prepare(
        self, starting: list[tuple[GrantTerms, PublishedCatalogEntry]]
    ) -> dict[str, ActiveGrant]:
        # A registry client of its own: the client caches every schema it looked up, which
        # for thousands of grants is tens of MB the router never reads again.
        registry = Registry(self.settings.registry)
        try:
            return prepare_deliveries(self.settings, self.admin, registry, starting, self.salts)
        finally:
            registry.close()

    def apply(self, prepared: Prepared, now: dt.datetime) -> list[Happening]:
        """Non-blocking part, in the event loop: swap the routing tables at once."""
        by_topic: dict[str, list[ActiveGrant]] = {t: [] for t in self.core.routes}
        for grant in prepared.active.values():
            topic = self.catalog.entries[grant.plan.entry.id].source_topic
            by_topic.setdefault(topic, []).append(grant)
        for topic, grants in by_topic.items():
            if topic in self.core.routes:
                self.core.set_grants(topic, grants)
                metrics.ACTIVE_GRANTS.labels(self.core.routes[topic].entry.id).set(len(grants))
        self.active = prepared.active
        self._seen_version = prepared.version
        self._next_change = prepared.next_change
        retry_at = now + dt.timedelta(seconds=RETRY_PREPARE_S)
        for grant_id, why in prepared.waiting.items():
            if grant_id not in self.waiting:
                log.error(
                    "grant %s cannot be prepared yet (trying again every %.0f s; every other "
                    "grant goes on routing): %s",
                    grant_id,
                    RETRY_PREPARE_S,
                    why,
                )
        self.waiting = {g: (why, retry_at) for g, why in prepared.waiting.items()}
        metrics.GRANTS_WAITING.set(len(self.waiting))
        for h in prepared.happenings:
            log.info("%s: grant %s (%s)", h.kind, h.grant_id, h.details.get("why"))
        return prepared.happenings


def _delivery_event(kind: str, grant: GrantTerms, actor: str, ts_ms: int, why: str) -> Happening:
    return Happening(
        kind=kind,
        actor=actor,
        ts_ms=ts_ms,
        entry=grant.entry,
        consumer=grant.consumer,
        grant_id=grant.id,
        details={
            "why": why,
            "revision": grant.revision,
            "valid_until": grant.valid_until.isoformat(),
        },
    )
