import datetime as dt

import pytest

from exchange.grants.model import DEFAULT_MASK, Actor, Mask
from exchange.grants.rules import (
    GrantError,
    approve,
    effective_masks,
    reject,
    request_problems,
    revoke,
)
from tests.unit.grants.fixtures import DEPARTMENTS, FIELDS, OPERATORS, T0, entry, grant, request

LATER = T0 + dt.timedelta(hours=1)


def problems(**changes: object) -> list[str]:
    return request_problems(request(**changes), entry(), FIELDS, DEPARTMENTS)


def test_a_sound_request_has_no_problems() -> None:
    assert problems() == []


def test_never_shared_entries_cannot_be_requested() -> None:
    found = request_problems(request(), entry("none"), FIELDS, DEPARTMENTS)
    assert found == ["entry: gongan.resident_population is never shared (不予共享)"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"consumer": "nobody"}, "consumer: unknown department 'nobody'"),
        ({"consumer": "gongan"}, "consumer: gongan provides gongan.resident_population itself"),
        (
            {"fields": ["name", "salary"]},
            "fields: gongan.resident_population has no field 'salary'",
        ),
        ({"fields": ["name", "name"]}, "fields: name is listed twice"),
        ({"fields": []}, "fields: name at least one field"),
        ({"valid_until": T0}, "valid_until: must be after valid_from"),
        (
            {"row_filter": {"county": {"eq": "1"}}},
            "row_filter: gongan.resident_population has no field 'county'",
        ),
        (
            {"row_filter": {"birth_date": {"prefix": "19"}}},
            "row_filter: prefix needs a text field, birth_date is not",
        ),
        ({"masks": {"phone": "hash"}}, "masks: phone is not one of the granted fields"),
        (
            {"masks": {"name": "none"}, "legal_basis": " "},
            "masks: unmasking sensitive field name needs a legal_basis",
        ),
    ],
)
def test_request_problems_name_the_field(changes: dict[str, object], expected: str) -> None:
    assert problems(**changes) == [expected]


def test_sensitive_fields_are_masked_unless_unmasked() -> None:
    e = entry()
    assert effective_masks(request(), e) == {"citizen_id": DEFAULT_MASK, "name": DEFAULT_MASK}
    req = request(masks={"name": "none", "region_code": "hash"})
    assert effective_masks(req, e) == {"citizen_id": DEFAULT_MASK, "region_code": Mask(kind="hash")}


def test_conditional_needs_the_provider_or_an_operator() -> None:
    with pytest.raises(GrantError) as caught:
        approve(grant(), entry(), Actor(department="rsj"), LATER, OPERATORS)
    assert caught.value.code == "NOT_APPROVER"
    for approver in ("gongan", "dsj"):
        done = approve(grant(), entry(), Actor(department=approver, person="李"), LATER, OPERATORS)
        assert done.state == "approved"
        assert done.decision is not None and done.decision.by.department == approver
        assert done.decision.at == LATER and done.revision == 2


def test_unconditional_may_be_approved_by_anyone_and_none_by_nobody() -> None:
    e = entry("unconditional")
    assert approve(grant(), e, Actor(department="mzj"), LATER, OPERATORS).state == "approved"
    with pytest.raises(GrantError) as caught:
        approve(grant(), entry("none"), Actor(department="dsj"), LATER, OPERATORS)
    assert caught.value.code == "NEVER_SHARED"


def test_decisions_follow_the_states() -> None:
    e = entry()
    rejected = reject(grant(), e, Actor(department="gongan"), LATER, OPERATORS, "no basis")
    assert rejected.state == "rejected"
    with pytest.raises(GrantError, match="it is rejected"):
        approve(rejected, e, Actor(department="gongan"), LATER, OPERATORS)
    with pytest.raises(GrantError, match="nothing to revoke"):
        revoke(rejected, e, Actor(department="gongan"), LATER, OPERATORS)


def test_revocation_by_provider_consumer_or_operator_only() -> None:
    e = entry()
    active = approve(grant(), e, Actor(department="gongan"), LATER, OPERATORS)
    for who in ("gongan", "mzj", "dsj"):
        assert revoke(active, e, Actor(department=who), LATER, OPERATORS).state == "revoked"
    with pytest.raises(GrantError) as caught:
        revoke(active, e, Actor(department="rsj"), LATER, OPERATORS)
    assert caught.value.code == "NOT_ALLOWED"
