import datetime as dt

from exchange.config.settings import ExchangeSettings
from exchange.grants.model import Actor, Decision
from exchange.security.acls import (
    Acl,
    connector_transactional_id,
    desired_acls,
    is_managed,
    next_grant_edge,
    plan_acls,
)
from tests.unit.grants.fixtures import T0, grant

SETTINGS = ExchangeSettings()
PROVIDERS = {"gongan.resident_population": "gongan", "mzj.marriage_registration": "mzj"}
NOW = T0 + dt.timedelta(days=1)


def approved(consumer: str = "mzj", **changes: object):  # type: ignore[no-untyped-def]
    g = grant(consumer=consumer, **changes)
    decision = Decision(by=Actor(department="gongan", person="李"), at=T0)
    return g.model_copy(update={"state": "approved", "decision": decision})


def of(acls: set[Acl], principal: str) -> set[tuple[str, str, str, str]]:
    return {(a.resource, a.name, a.pattern, a.operation) for a in acls if a.principal == principal}


def test_a_consumer_reads_only_the_delivery_topics_of_its_active_grants() -> None:
    terms = approved().terms()
    acls = desired_acls(SETTINGS, PROVIDERS, [terms], NOW)
    # The topic of the grant's current generation: not its earlier ones, not another grant's.
    topic = f"dlv.mzj.gongan.resident_population.{terms.id}.r{terms.revision}"
    assert of(acls, "consumer-mzj") == {
        ("TOPIC", topic, "LITERAL", "READ"),
        ("TOPIC", topic, "LITERAL", "DESCRIBE"),
        ("GROUP", "mzj.", "PREFIXED", "READ"),
        ("GROUP", "mzj.", "PREFIXED", "DESCRIBE"),
    }
    # Nothing on a source topic, another department's deliveries or a control topic.
    assert not {
        a for a in acls if a.principal.startswith("consumer-") and a.name.startswith("src.")
    }


def test_requested_revoked_expired_and_future_grants_give_nothing() -> None:
    requested = grant()
    revoked = approved().model_copy(update={"state": "revoked"})
    expired = approved(valid_until=T0 + dt.timedelta(hours=1))
    future = approved(valid_from=NOW + dt.timedelta(days=1), valid_until=NOW + dt.timedelta(days=9))
    for g in (requested, revoked, expired, future):
        assert of(desired_acls(SETTINGS, PROVIDERS, [g.terms()], NOW), "consumer-mzj") == set(), (
            g.state
        )


def test_a_grant_for_an_entry_no_longer_in_the_catalog_gives_nothing() -> None:
    acls = desired_acls(SETTINGS, {"mzj.marriage_registration": "mzj"}, [approved().terms()], NOW)
    assert of(acls, "consumer-mzj") == set()


def test_a_connector_writes_only_its_departments_entries() -> None:
    acls = desired_acls(SETTINGS, PROVIDERS, [], NOW)
    writes = {
        a.name
        for a in acls
        if a.principal == "connector-gongan" and a.operation == "WRITE" and a.resource == "TOPIC"
    }
    assert writes == {
        "src.gongan.resident_population",
        "exchange.dlq",
        "exchange.connector-offsets.gongan",
    }


def test_a_connector_may_use_only_its_own_departments_transactional_ids() -> None:
    acls = desired_acls(SETTINGS, PROVIDERS, [], NOW)
    ids = {(a.principal, a.name, a.pattern) for a in acls if a.resource == "TRANSACTIONAL_ID"}
    connectors = {i for i in ids if i[0].startswith("connector-")}
    assert connectors == {
        (f"connector-{d}", f"exchange-connector.{d}.", "PREFIXED") for d in set(PROVIDERS.values())
    }
    assert connector_transactional_id("gongan", "hukou").startswith("exchange-connector.gongan.")


def test_a_connector_keeps_positions_only_on_its_departments_topic() -> None:
    acls = desired_acls(SETTINGS, PROVIDERS, [], NOW)
    offsets = {
        (a.principal, a.name) for a in acls if a.name.startswith("exchange.connector-offsets")
    }
    assert offsets == {
        (f"connector-{d}", f"exchange.connector-offsets.{d}") for d in set(PROVIDERS.values())
    }


def test_only_the_platform_writes_grants_catalog_and_audit() -> None:
    acls = desired_acls(SETTINGS, PROVIDERS, [approved().terms()], NOW)
    # Grants: the operator (a super user) and the portal, which checks who asks; the catalog:
    # the operator alone.
    writers = {
        (a.principal, a.name)
        for a in acls
        if a.name in (SETTINGS.topics.grants, SETTINGS.topics.catalog) and a.operation == "WRITE"
    }
    assert writers == {("portal", SETTINGS.topics.grants)}
    audit_writers = {
        a.principal for a in acls if a.name == SETTINGS.topics.audit and a.operation == "WRITE"
    }
    assert audit_writers == {"router", "portal", "quality"}
    # The portal writes audit chains only under its own prefix.
    portal_ids = {
        a.name for a in acls if a.principal == "portal" and a.resource == "TRANSACTIONAL_ID"
    }
    assert portal_ids == {"exchange-audit.portal."}
    # Nobody else reads the portal's password hashes and sessions.
    readers = {a.principal for a in acls if a.name == SETTINGS.topics.portal_accounts}
    assert readers == {"portal"}
    # The router writes deliveries, by prefix, and reads every source topic.
    assert ("TOPIC", "dlv.", "PREFIXED", "WRITE") in of(acls, "router")
    assert ("TOPIC", "src.", "PREFIXED", "READ") in of(acls, "router")


def test_the_quality_worker_reads_sources_and_writes_only_quality_topics() -> None:
    acls = desired_acls(SETTINGS, PROVIDERS, [approved().terms()], NOW)
    t = SETTINGS.topics
    quality = of(acls, "quality")
    assert ("TOPIC", "src.", "PREFIXED", "READ") in quality
    written = {name for kind, name, _p, op in quality if kind == "TOPIC" and op == "WRITE"}
    assert written == {
        t.objections,
        t.quality_measures,
        t.quality_scores,
        t.audit,
        t.portal_notices,
    }
    assert ("TRANSACTIONAL_ID", "exchange-audit.quality.", "PREFIXED", "WRITE") in quality
    # Never deliveries, grants or the portal's accounts; objections only with the portal.
    assert not any(name.startswith("dlv.") for _k, name, _p, _o in quality)
    writers = {a.principal for a in acls if a.name == t.objections and a.operation == "WRITE"}
    assert writers == {"portal", "quality"}


def test_plan_adds_the_missing_removes_the_stale_and_leaves_others_alone() -> None:
    keep = Acl("consumer-mzj", "TOPIC", "dlv.mzj.x", "LITERAL", "READ")
    new = Acl("consumer-mzj", "TOPIC", "dlv.mzj.y", "LITERAL", "READ")
    stale = Acl("consumer-rsj", "TOPIC", "dlv.rsj.x", "LITERAL", "READ")
    foreign = Acl("alice", "TOPIC", "anything", "LITERAL", "READ")
    plan = plan_acls({keep, new}, [keep, stale, foreign])
    assert plan.add == (new,)
    assert plan.remove == (stale,)
    assert plan.keep == (keep,)
    assert plan.unmanaged == 1
    assert plan_acls({keep}, [keep]).empty


def test_managed_principals() -> None:
    assert is_managed("router") and is_managed("consumer-mzj") and is_managed("connector-x")
    assert not is_managed("operator") and not is_managed("alice")


def test_the_next_edge_is_the_nearest_start_or_end_of_an_approved_grant() -> None:
    ends = approved(valid_until=NOW + dt.timedelta(hours=2))
    starts = approved(
        valid_from=NOW + dt.timedelta(hours=1), valid_until=NOW + dt.timedelta(days=2)
    )
    assert next_grant_edge([ends.terms(), starts.terms()], NOW) == NOW + dt.timedelta(hours=1)
    assert next_grant_edge([grant(valid_until=NOW + dt.timedelta(minutes=1)).terms()], NOW) is None
