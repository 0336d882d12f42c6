"""``exchange acl sync``: make the broker's ACLs match the catalog and the grants, audited.

Reading and writing the broker is here; deciding what the ACLs should be is the pure
``acls`` module. Every ACL added or removed is an audit event, written before the change is
made, so the trail never misses a change that happened (a failed change leaves an event that
did not take effect, and the next sync repeats it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException

# confluent-kafka's admin package does not declare these in __all__, hence the ignore.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from exchange.audit.events import Happening
from exchange.audit.writer import AuditWriter
from exchange.catalog.published import read_published
from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.grants.book import GrantBook
from exchange.grants.model import GrantTerms
from exchange.grants.store import read_grants
from exchange.kafka.admin import Admin
from exchange.security.acls import Acl, AclPlan, desired_acls, next_grant_edge, plan_acls
from exchange.security.errors import SecurityError

log = logging.getLogger(__name__)


def to_binding(acl: Acl) -> AclBinding:
    return AclBinding(
        ResourceType[acl.resource],
        acl.name,
        ResourcePatternType[acl.pattern],
        f"User:{acl.principal}",
        acl.host,
        AclOperation[acl.operation],
        AclPermissionType.ALLOW,
    )


def from_binding(binding: AclBinding) -> Acl | None:
    """Our form of a broker ALLOW rule; ``None`` for a DENY rule (it only takes away, so it is
    left alone) or a principal that is not a user."""
    if binding.permission_type != AclPermissionType.ALLOW or not binding.principal.startswith(
        "User:"
    ):
        return None
    return Acl(
        binding.principal.removeprefix("User:"),
        _name(binding.restype),
        binding.name,
        _name(binding.resource_pattern_type),
        _name(binding.operation),
        binding.host,
    )


def _name(value: object) -> str:
    # The client's stubs allow str and int too; described ACLs always carry the enums.
    return str(getattr(value, "name", value))


def plan(
    settings: ExchangeSettings, admin: Admin, grants: list[GrantTerms], now: dt.datetime
) -> AclPlan:
    catalog = read_published(settings)
    providers = {e: p.entry.provider for e, p in catalog.entries.items()}
    desired = desired_acls(settings, providers, grants, now)
    existing = []
    foreign = 0
    for binding in admin.acls():
        acl = from_binding(binding)
        if acl is None:
            foreign += 1
        else:
            existing.append(acl)
    result = plan_acls(desired, existing)
    return dataclasses.replace(result, unmanaged=result.unmanaged + foreign)


def apply(settings: ExchangeSettings, admin: Admin, change: AclPlan, audit: AuditWriter) -> None:
    if change.empty:
        return
    ts = int(time.time() * 1000)
    happenings = [_happening("acl.added", acl, audit.chain_id, ts) for acl in change.add]
    happenings += [_happening("acl.removed", acl, audit.chain_id, ts) for acl in change.remove]
    audit.write(happenings)
    try:
        admin.delete_acls([to_binding(a) for a in change.remove])
        admin.create_acls([to_binding(a) for a in change.add])
    except ExchangeError as exc:
        # The events above announced the change: say that it did not (all) take effect. The
        # next sync plans the difference again.
        audit.write(
            [
                Happening(
                    kind="acl.failed",
                    actor=audit.chain_id,
                    ts_ms=int(time.time() * 1000),
                    details={"error": str(exc), "planned": len(happenings)},
                )
            ]
        )
        raise


def _happening(kind: str, acl: Acl, actor: str, ts: int) -> Happening:
    consumer = None
    if acl.principal.startswith("consumer-"):
        consumer = acl.principal.removeprefix("consumer-")
    return Happening(
        kind=kind,
        actor=actor,
        ts_ms=ts,
        details={
            "principal": f"User:{acl.principal}",
            "resource": acl.resource,
            "name": acl.name,
            "pattern": acl.pattern,
            "operation": acl.operation,
        },
        consumer=consumer,
    )


def sync_once(settings: ExchangeSettings, audit: AuditWriter | None) -> AclPlan:
    """One sync from the grants as they are now; without ``audit``, a dry run (only the plan)."""
    admin = Admin(settings.kafka)
    grants = [g.terms() for g in read_grants(settings).grants.values()]
    change = plan(settings, admin, grants, dt.datetime.now(dt.UTC))
    if audit is not None:
        apply(settings, admin, change, audit)
    return change


class AclWatch:
    """Keeps ACLs in sync as grants change, start or end (``acl sync --watch``)."""

    def __init__(
        self,
        settings: ExchangeSettings,
        audit: AuditWriter,
        on_change: Callable[[AclPlan], None] = lambda _p: None,
        resync_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.on_change = on_change
        #: A full sync this often even without a grant change: repairs hand-made changes and
        #: picks up catalog changes.
        self.resync_s = resync_s
        self.admin = Admin(settings.kafka)
        self.book = GrantBook(settings)
        self.stopping = threading.Event()

    def run(self, poll_s: float = 1.0, retry_s: float = 5.0) -> None:
        """Sync until stopped. A failed sync (broker unreachable, a timeout) is logged and
        retried; only losing the grants themselves ends the watch, with an error."""
        try:
            self.book.start(self.settings.kafka.request_timeout_s * 4)
        except TimeoutError as exc:
            raise SecurityError(f"cannot follow the grants: {exc}", code="NO_GRANTS") from exc
        try:
            seen = -1
            due = 0.0
            next_edge: dt.datetime | None = None
            while not self.stopping.is_set():
                if not self.book.alive:
                    raise SecurityError(
                        "the grants are no longer followed (their reader stopped): ACLs would "
                        "go stale, so the watch stops; restart it",
                        code="NO_GRANTS",
                    )
                version, grants = self.book.snapshot()
                now = dt.datetime.now(dt.UTC)
                edge_passed = next_edge is not None and now >= next_edge
                if version != seen or edge_passed or time.monotonic() >= due:
                    try:
                        change = plan(self.settings, self.admin, list(grants.values()), now)
                        apply(self.settings, self.admin, change, self.audit)
                    except (ExchangeError, KafkaException) as exc:
                        log.error("ACL sync failed, retrying in %.0f s: %s", retry_s, exc)
                        self.stopping.wait(retry_s)
                        continue
                    if not change.empty:
                        self.on_change(change)
                    seen, due = version, time.monotonic() + self.resync_s
                    next_edge = next_grant_edge(grants.values(), now)
                self.stopping.wait(poll_s)
        finally:
            self.book.stop()
