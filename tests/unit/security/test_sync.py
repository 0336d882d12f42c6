from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from exchange.security.acls import Acl, plan_acls
from exchange.security.sync import from_binding, to_binding


def binding(
    principal: str, host: str = "*", permission: AclPermissionType = AclPermissionType.ALLOW
) -> AclBinding:
    return AclBinding(
        ResourceType.TOPIC,
        "src.gongan.resident_population",
        ResourcePatternType.LITERAL,
        principal,
        host,
        AclOperation.READ,
        permission,
    )


def test_bindings_round_trip() -> None:
    acl = Acl("consumer-mzj", "TOPIC", "dlv.mzj.x", "PREFIXED", "READ")
    assert from_binding(to_binding(acl)) == acl


def test_a_managed_principals_rule_for_one_host_is_stale() -> None:
    # A hand-made READ on a source topic from one address must not survive a sync.
    acl = from_binding(binding("User:consumer-mzj", host="10.0.0.7"))
    assert acl is not None and acl.host == "10.0.0.7"
    plan = plan_acls(set(), [acl])
    assert plan.remove == (acl,)
    assert to_binding(acl).host == "10.0.0.7"  # deleted exactly as it is


def test_deny_rules_and_non_users_are_left_alone() -> None:
    assert from_binding(binding("User:consumer-mzj", permission=AclPermissionType.DENY)) is None
    assert from_binding(binding("Group:ops")) is None
