import datetime as dt
import gc

import pytest
from pydantic import ValidationError

from exchange.grants import model
from exchange.grants.model import Grant, Mask, Predicate, parse_row_filter
from tests.unit.grants.fixtures import T0, grant, request


def test_row_filter_short_form() -> None:
    preds = parse_row_filter({"region_code": {"prefix": "1406"}, "gender": {"in": ["1", "2"]}})
    assert preds == (
        Predicate(field="region_code", op="prefix", values=("1406",)),
        Predicate(field="gender", op="in", values=("1", "2")),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"region_code": {"like": "14"}}, "unknown condition"),
        ({"region_code": "1406"}, "must be one of eq, in, prefix"),
        ({"region_code": {"eq": ["1", "2"]}}, "use 'in' for several"),
        ({"region_code": {"prefix": 14}}, "prefix takes a text value"),
        ("region_code", "must map fields"),
    ],
)
def test_bad_row_filters_say_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises((ValueError, ValidationError), match=message):
        parse_row_filter(raw)


def test_mask_short_forms() -> None:
    assert Mask.model_validate("hash") == Mask(kind="hash")
    assert Mask.model_validate({"keep": {"first": 6, "last": 4}}) == Mask(
        kind="keep", first=6, last=4
    )
    with pytest.raises(ValidationError):
        Mask.model_validate("scramble")


def test_request_needs_time_zones_and_accepts_comma_fields() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        request(valid_from=dt.datetime(2026, 1, 1))
    assert request(fields="name, region_code").fields == ("name", "region_code")


def test_status_follows_the_period() -> None:
    g = grant().model_copy(update={"state": "approved"})
    assert g.status(T0 - dt.timedelta(seconds=1)) == "pending"
    assert g.status(T0) == "active"
    assert g.status(T0 + dt.timedelta(days=365)) == "expired"
    assert grant().status(T0) == "requested"


def test_grant_round_trips_as_json() -> None:
    g = grant(row_filter={"region_code": {"prefix": "1406"}}, masks={"name": "hash"})
    assert Grant.decode(g.encode()) == g


def test_decoded_grants_share_their_repeated_text() -> None:
    # A router decodes every grant; thousands repeat the same departments, entries and fields.
    one = grant(consumer="minzheng").model_copy(update={"id": "g-1"})
    two = Grant.decode(one.model_copy(update={"id": "g-2"}).encode())
    one = Grant.decode(one.encode())
    assert one.request.consumer is two.request.consumer
    assert one.request.fields[0] is two.request.fields[0]
    assert one.request.legal_basis is two.request.legal_basis
    assert one.requested_by.department is two.requested_by.department


def test_terms_carry_what_routing_needs_and_follow_the_same_period() -> None:
    g = grant(row_filter={"region_code": {"prefix": "1406"}}, masks={"name": "hash"}).model_copy(
        update={"state": "approved"}
    )
    terms = g.terms()
    r = g.request
    assert (terms.id, terms.revision, terms.consumer, terms.entry) == (
        g.id,
        g.revision,
        r.consumer,
        r.entry,
    )
    assert (terms.fields, terms.row_filter, dict(terms.masks)) == (r.fields, r.row_filter, r.masks)
    for at in (T0 - dt.timedelta(seconds=1), T0, T0 + dt.timedelta(days=365)):
        assert terms.status(at) == g.status(at)
    # A new revision is a change the router must see; the same grant decoded again is not.
    assert Grant.decode(g.encode()).terms() == terms
    assert g.model_copy(update={"revision": 2}).terms() != terms


def test_terms_share_equal_masks() -> None:
    one = grant(masks={"name": "hash"}).terms()
    two = grant(masks={"name": "hash"}).model_copy(update={"id": "g-2"}).terms()
    assert one.masks["name"] is two.masks["name"]


def test_a_mask_no_grant_holds_leaves_the_shared_table() -> None:
    rare = {"kind": "keep", "first": 17, "last": 3}
    terms = grant(masks={"name": rare}).terms()
    held = terms.masks["name"]
    del terms
    gc.collect()
    assert model._MASKS[("keep", 17, 3)] is held
    del held
    gc.collect()
    assert ("keep", 17, 3) not in model._MASKS
