"""Who may do what (portal/policy.py), allowed and refused, without Kafka."""

from __future__ import annotations

import pytest

from exchange.portal import policy
from exchange.portal.errors import BadRequestError, ForbiddenError, NotFoundError
from tests.unit.grants.fixtures import OPERATORS, entry, grant
from tests.unit.portal.fixtures import person, system


def test_only_the_consumers_applicants_request_for_it() -> None:
    policy.require_requester(person("mzj", "applicant"), "mzj", OPERATORS)
    policy.require_requester(system("mzj", "applicant"), "mzj", OPERATORS)
    policy.require_requester(person("dsj", "operator"), "mzj", OPERATORS)
    with pytest.raises(ForbiddenError, match="needs the applicant role") as viewer:
        policy.require_requester(person("mzj", "viewer"), "mzj", OPERATORS)
    assert viewer.value.code == "NOT_APPLICANT"
    with pytest.raises(ForbiddenError, match="requests for itself"):
        policy.require_requester(person("rsj", "applicant"), "mzj", OPERATORS)
    # The operator role outside an operator department is nothing.
    with pytest.raises(ForbiddenError):
        policy.require_requester(person("rsj", "operator"), "mzj", OPERATORS)


def test_only_an_approver_of_the_provider_decides() -> None:
    g, e = grant(), entry()
    policy.require_decider(person("gongan", "approver"), g, e, OPERATORS, "", False)
    policy.require_decider(system("gongan", "approver"), g, e, OPERATORS, "", False)
    with pytest.raises(ForbiddenError) as applicant:
        policy.require_decider(person("gongan", "applicant"), g, e, OPERATORS, "", False)
    assert applicant.value.code == "NOT_APPROVER"
    # An approver of the consumer (or of anyone else) does not decide its own request.
    with pytest.raises(ForbiddenError) as consumer:
        policy.require_decider(person("mzj", "approver"), g, e, OPERATORS, "", False)
    assert consumer.value.code == "NOT_PROVIDER"
    # A department the grant does not concern does not even learn it exists.
    with pytest.raises(NotFoundError):
        policy.require_decider(person("rsj", "approver"), g, e, OPERATORS, "", False)


def test_a_platform_operator_decides_conditional_entries_only() -> None:
    g = grant()
    policy.require_decider(person("dsj", "operator"), g, entry("conditional"), OPERATORS, "", False)
    with pytest.raises(ForbiddenError):
        policy.require_decider(
            person("dsj", "operator"), g, entry("unconditional"), OPERATORS, "", False
        )


def test_a_rejection_needs_its_reason() -> None:
    approver = person("gongan", "approver")
    with pytest.raises(BadRequestError) as missing:
        policy.require_decider(approver, grant(), entry(), OPERATORS, "  ", True)
    assert missing.value.code == "REASON_REQUIRED"
    policy.require_decider(approver, grant(), entry(), OPERATORS, "无法律依据", True)


def test_the_consumer_ends_its_own_grant_and_the_provider_too() -> None:
    g, e = grant(), entry()
    policy.require_revoker(person("mzj", "applicant"), g, e, OPERATORS)
    policy.require_revoker(person("mzj", "admin"), g, e, OPERATORS)
    policy.require_revoker(person("gongan", "approver"), g, e, OPERATORS)
    policy.require_revoker(person("dsj", "operator"), g, e, OPERATORS)
    for who in (person("mzj", "viewer"), person("gongan", "viewer")):
        with pytest.raises(ForbiddenError):
            policy.require_revoker(who, g, e, OPERATORS)
    with pytest.raises(NotFoundError):
        policy.require_revoker(person("rsj", "admin"), g, e, OPERATORS)


def test_a_department_sees_only_grants_that_concern_it() -> None:
    mine = grant()
    theirs = grant(consumer="rsj")
    entries = {"gongan.resident_population": entry()}
    assert policy.visible_grants(person("mzj", "viewer"), [mine, theirs], entries, OPERATORS) == [
        mine
    ]
    # The provider sees every grant on its entries; the operator everything.
    for who in (person("gongan", "viewer"), person("dsj", "operator")):
        assert policy.visible_grants(who, [mine, theirs], entries, OPERATORS) == [mine, theirs]
    assert policy.visible_grants(person("zjj", "admin"), [mine, theirs], entries, OPERATORS) == []


def test_administrators_manage_their_own_department_only() -> None:
    policy.require_account_admin(person("mzj", "admin"), "mzj", OPERATORS)
    policy.require_account_admin(person("dsj", "operator"), "mzj", OPERATORS)
    for who, dept in (
        (person("mzj", "admin"), "rsj"),
        (person("mzj", "approver", "applicant"), "mzj"),
        (system("mzj", "approver"), "mzj"),
    ):
        with pytest.raises(ForbiddenError):
            policy.require_account_admin(who, dept, OPERATORS)


def test_roles_an_administrator_may_hand_out() -> None:
    admin = person("mzj", "admin")
    policy.require_roles_grantable(admin, "mzj", ["viewer", "applicant", "admin"], OPERATORS)
    with pytest.raises(BadRequestError, match="not a platform operator department"):
        policy.require_roles_grantable(admin, "mzj", ["operator"], OPERATORS)
    with pytest.raises(ForbiddenError, match="only a platform operator"):
        policy.require_roles_grantable(person("dsj", "admin"), "dsj", ["operator"], OPERATORS)
    policy.require_roles_grantable(person("dsj", "operator"), "dsj", ["operator"], OPERATORS)
    with pytest.raises(BadRequestError, match="not for a token"):
        policy.require_roles_grantable(admin, "mzj", ["admin"], OPERATORS, token=True)
