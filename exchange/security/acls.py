"""Which ACLs the broker must hold, derived from the catalog and the grants. Pure; no Kafka.

Who may do what (everything else is denied by the broker's authorizer):

- ``connector-<dept>`` writes the ``src.*`` topics of the entries its department provides, and
  rejected rows to the DLQ; it reads the catalog and keeps its source positions on its
  department's own ``exchange.connector-offsets.<dept>`` (no other department reads or writes
  it), writing both in transactions whose ids start ``exchange-connector.<dept>.``.
- ``consumer-<dept>`` reads ``dlv.<dept>.<entry>.<grant>.r<revision>`` (the current generation
  of each of its grants) while the grant is active, in consumer
  groups named ``<dept>.*``.
- ``router`` reads ``src.*`` and the control topics, writes ``dlv.*`` (creating them), the audit
  trail (transactionally, as ``exchange-audit.router.*``), the DLQ and its backfill progress.
- ``monitor`` describes every topic and group and reads the audit trail, the DLQ and grants.
- The platform operator is a super user: it needs no ACL, and so nobody else writes
  ``exchange.grants`` or ``exchange.catalog``; only it and the router write ``exchange.audit``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exchange.config.settings import ExchangeSettings
from exchange.grants.model import GrantTerms

ROUTER = "router"
MONITOR = "monitor"
#: The platform operator's principal (a super user on the secure platform).
OPERATOR = "operator"
#: The departments' portal (``exchange portal serve``): it changes grants for them.
PORTAL = "portal"
#: The quality worker (``exchange quality run``): reads what departments publish, as the router.
QUALITY = "quality"
CONSUMER_PREFIX = "consumer-"
CONNECTOR_PREFIX = "connector-"
#: Prefix of the connectors' ``transactional.id`` s (``connector_transactional_id``).
CONNECTOR_TRANSACTIONS = "exchange-connector."
#: Control-topic readers use throwaway group ids with this prefix (``kafka.control.reader``).
READER_GROUPS = "exchange-reader-"
ROLES = ("consumer", "connector")


def consumer_principal(department: str) -> str:
    return f"{CONSUMER_PREFIX}{department}"


def connector_principal(department: str) -> str:
    return f"{CONNECTOR_PREFIX}{department}"


def connector_transactional_id(department: str, connector: str) -> str:
    """A connector's ``transactional.id``: its department's prefix, so the department's principal
    may use its own and no other department's (a second process with the same id fences the
    first, so the id names one connector)."""
    return f"{CONNECTOR_TRANSACTIONS}{department}.{connector}"


def principal_for(department: str, role: str) -> str:
    return consumer_principal(department) if role == "consumer" else connector_principal(department)


def is_managed(principal: str) -> bool:
    """ACLs of these principals are ours: ``acl sync`` adds and removes them."""
    return principal in (ROUTER, MONITOR, PORTAL, QUALITY) or principal.startswith(
        (CONSUMER_PREFIX, CONNECTOR_PREFIX)
    )


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for a principal, from any host."""

    principal: str
    resource: str  # TOPIC | GROUP | TRANSACTIONAL_ID | CLUSTER
    name: str
    pattern: str  # LITERAL | PREFIXED
    operation: str  # READ | WRITE | CREATE | DESCRIBE | DESCRIBE_CONFIGS | ...
    #: We only ever allow from any host; a hand-made rule for one host is stale like any other.
    host: str = "*"

    def describe(self) -> str:
        star = "*" if self.pattern == "PREFIXED" else ""
        where = "" if self.host == "*" else f" from {self.host}"
        return f"{self.operation} {self.resource.lower()} {self.name}{star}{where}"


@dataclass(frozen=True)
class AclPlan:
    add: tuple[Acl, ...]
    remove: tuple[Acl, ...]
    #: ACLs on the broker for principals this project does not manage: left alone.
    unmanaged: int = 0
    keep: tuple[Acl, ...] = field(default=(), repr=False)

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove


def _allow(principal: str, resource: str, name: str, pattern: str, *ops: str) -> set[Acl]:
    return {Acl(principal, resource, name, pattern, op) for op in ops}


def desired_acls(
    settings: ExchangeSettings,
    providers: Mapping[str, str],
    grants: Iterable[GrantTerms],
    now: dt.datetime,
) -> set[Acl]:
    """Every ACL the broker should hold. ``providers``: entry id -> providing department."""
    t = settings.topics
    acls: set[Acl] = set()

    for dept in sorted(set(providers.values())):
        p = connector_principal(dept)
        for entry, provider in providers.items():
            if provider == dept:
                acls |= _allow(p, "TOPIC", t.source_prefix + entry, "LITERAL", "WRITE", "DESCRIBE")
        acls |= _allow(p, "TOPIC", t.dlq, "LITERAL", "WRITE", "DESCRIBE")
        acls |= _allow(p, "TOPIC", t.catalog, "LITERAL", "READ", "DESCRIBE")
        offsets = t.connector_offsets_of(dept)
        acls |= _allow(p, "TOPIC", offsets, "LITERAL", "READ", "WRITE", "DESCRIBE")
        acls |= _allow(p, "GROUP", READER_GROUPS, "PREFIXED", "READ")
        # Records and saved position in one transaction (publish.exactly_once).
        own = connector_transactional_id(dept, "")
        acls |= _allow(p, "TRANSACTIONAL_ID", own, "PREFIXED", "WRITE", "DESCRIBE")

    for grant in grants:
        entry, consumer = grant.entry, grant.consumer
        if not grant.is_active(now) or entry not in providers:
            continue
        p = consumer_principal(consumer)
        # The grant generation's own topic: nothing of another grant, nor of these terms
        # once they change (the router deletes the old generation's topic).
        topic = t.delivery_of(consumer, entry, grant.id, grant.generation())
        acls |= _allow(p, "TOPIC", topic, "LITERAL", "READ", "DESCRIBE")
        acls |= _allow(p, "GROUP", f"{consumer}.", "PREFIXED", "READ", "DESCRIBE")

    r = ROUTER
    acls |= _allow(r, "TOPIC", t.source_prefix, "PREFIXED", "READ", "DESCRIBE")
    # DELETE: the topics of grant generations that ended or changed (routing/reaper.py).
    acls |= _allow(
        r,
        "TOPIC",
        t.delivery_prefix,
        "PREFIXED",
        "WRITE",
        "DESCRIBE",
        "CREATE",
        "DESCRIBE_CONFIGS",
        "DELETE",
    )
    for topic in (t.grants, t.catalog):
        acls |= _allow(r, "TOPIC", topic, "LITERAL", "READ", "DESCRIBE")
    for topic in (t.audit, t.router_backfills):
        acls |= _allow(r, "TOPIC", topic, "LITERAL", "READ", "WRITE", "DESCRIBE")
    # Older deployments lack the backfill topic: the router creates it.
    acls |= _allow(r, "TOPIC", t.router_backfills, "LITERAL", "CREATE", "DESCRIBE_CONFIGS")
    acls |= _allow(r, "TOPIC", t.dlq, "LITERAL", "WRITE", "DESCRIBE")
    # The per-key state's changelogs: the router's alone (they say who holds which key).
    acls |= _allow(
        r,
        "TOPIC",
        t.router_state_of(""),
        "PREFIXED",
        "READ",
        "WRITE",
        "DESCRIBE",
        "CREATE",
        "DESCRIBE_CONFIGS",
    )
    acls |= _allow(r, "GROUP", settings.router.group_id, "LITERAL", "READ", "DESCRIBE")
    acls |= _allow(r, "GROUP", READER_GROUPS, "PREFIXED", "READ")
    acls |= _allow(
        r, "TRANSACTIONAL_ID", f"exchange-audit.{ROUTER}.", "PREFIXED", "WRITE", "DESCRIBE"
    )

    # The portal: its own topics, the grants it changes for departments (checking who asks),
    # the catalog, the audit trail it writes on portal.<replica> and shows grant by grant, and
    # the webhook senders' group.
    po = PORTAL
    for topic in (
        t.portal_accounts,
        t.portal_tokens,
        t.portal_sessions,
        t.portal_lockouts,
        t.portal_demands,
        t.portal_notices,
        t.portal_webhooks,
        t.objections,
        t.grants,
        t.audit,
    ):
        acls |= _allow(po, "TOPIC", topic, "LITERAL", "READ", "WRITE", "DESCRIBE")
    # The catalog; each entry's quality measures and, for the operators' assessment, the
    # score history.
    for topic in (t.catalog, t.quality_measures, t.quality_scores):
        acls |= _allow(po, "TOPIC", topic, "LITERAL", "READ", "DESCRIBE")
    # When each entry was last updated (the newest record's time: DESCRIBE, no READ).
    acls |= _allow(po, "TOPIC", t.source_prefix, "PREFIXED", "DESCRIBE")
    acls |= _allow(po, "GROUP", READER_GROUPS, "PREFIXED", "READ")
    acls |= _allow(po, "GROUP", f"{t.portal_notices}.webhooks", "LITERAL", "READ", "DESCRIBE")
    acls |= _allow(
        po, "TRANSACTIONAL_ID", f"exchange-audit.{PORTAL}.", "PREFIXED", "WRITE", "DESCRIBE"
    )

    # The quality worker: every source record and dead letter (its measures), the grants (to
    # find an objected record under its grant's hashing), objections and their notices, its
    # measures and scores, and the audit chain it writes on quality.<name>.
    q = QUALITY
    acls |= _allow(q, "TOPIC", t.source_prefix, "PREFIXED", "READ", "DESCRIBE")
    for topic in (t.dlq, t.grants, t.catalog):
        acls |= _allow(q, "TOPIC", topic, "LITERAL", "READ", "DESCRIBE")
    for topic in (t.objections, t.quality_measures, t.quality_scores, t.audit):
        acls |= _allow(q, "TOPIC", topic, "LITERAL", "READ", "WRITE", "DESCRIBE")
    acls |= _allow(q, "TOPIC", t.portal_notices, "LITERAL", "WRITE", "DESCRIBE")
    acls |= _allow(q, "GROUP", READER_GROUPS, "PREFIXED", "READ")
    # Whether the router is busy (its committed offsets), to give way to it.
    acls |= _allow(q, "GROUP", settings.router.group_id, "LITERAL", "DESCRIBE")
    acls |= _allow(
        q, "TRANSACTIONAL_ID", f"exchange-audit.{QUALITY}.", "PREFIXED", "WRITE", "DESCRIBE"
    )

    m = MONITOR
    acls |= _allow(m, "TOPIC", "*", "LITERAL", "DESCRIBE")
    acls |= _allow(m, "GROUP", "*", "LITERAL", "DESCRIBE")
    for topic in (t.audit, t.audit_keys, t.dlq, t.grants, t.catalog):
        acls |= _allow(m, "TOPIC", topic, "LITERAL", "READ")
    acls |= _allow(m, "GROUP", READER_GROUPS, "PREFIXED", "READ")
    return acls


def plan_acls(desired: set[Acl], existing: Iterable[Acl]) -> AclPlan:
    """What to add and remove so the managed principals hold exactly ``desired``."""
    existing = set(existing)
    managed = {a for a in existing if is_managed(a.principal)}
    return AclPlan(
        add=tuple(sorted(desired - managed)),
        remove=tuple(sorted(managed - desired)),
        unmanaged=len(existing - managed),
        keep=tuple(sorted(desired & managed)),
    )


def next_grant_edge(grants: Iterable[GrantTerms], now: dt.datetime) -> dt.datetime | None:
    """The next moment an approved grant starts or ends: the ACLs change then."""
    edges = [
        moment
        for g in grants
        if g.state == "approved"
        for moment in (g.valid_from, g.valid_until)
        if moment > now
    ]
    return min(edges, default=None)
