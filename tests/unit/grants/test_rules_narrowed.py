"""An approver may grant less than asked, never more (grants/rules.narrowed)."""

from __future__ import annotations

import datetime as dt

import pytest

from exchange.grants.rules import GrantError, narrowed
from tests.unit.grants.fixtures import T0, request


def test_fewer_fields_keep_their_order_and_only_their_masks() -> None:
    asked = request(masks={"name": "redact", "citizen_id": "hash"})
    granted = narrowed(asked, ["region_code", "citizen_id"])
    assert granted.fields == ("citizen_id", "region_code")
    assert set(granted.masks) == {"citizen_id"}
    assert narrowed(asked) is asked


def test_an_earlier_end_but_never_a_later_one() -> None:
    asked = request()
    earlier = T0 + dt.timedelta(days=90)
    assert narrowed(asked, valid_until=earlier).valid_until == earlier
    with pytest.raises(GrantError, match="the request ends") as later:
        narrowed(asked, valid_until=asked.valid_until + dt.timedelta(days=1))
    assert later.value.code == "NOT_NARROWER"
    with pytest.raises(GrantError, match="end after it starts"):
        narrowed(asked, valid_until=T0)


def test_no_field_that_was_not_asked_for() -> None:
    with pytest.raises(GrantError, match="not requested: phone"):
        narrowed(request(), ["citizen_id", "phone"])
    with pytest.raises(GrantError, match="at least one field"):
        narrowed(request(), [])
