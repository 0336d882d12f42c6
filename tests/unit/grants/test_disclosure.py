"""Masks other granted fields undo: refused at request, at `grants apply` and at approval.

The property test counts, independently of the rule, how many citizen IDs a consumer could still
hold given everything a grant shows it (the kept characters, the granted region code, birth
date and gender, and the check digit), exactly, by dynamic programming over the checksum."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.catalog.load import Catalog, load_catalog
from exchange.grants.disclosure import MIN_CANDIDATES
from exchange.grants.model import Actor, GrantRequest
from exchange.grants.rules import GrantError, approve, effective_masks, new_grant
from exchange.grants.store import catalog_problems
from tests.conftest import ROOT, Project
from tests.unit.grants.fixtures import T0

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"
#: A valid GB 11643 ID: region 140602, born 1990-01-01, sequence 123 (odd: male).
ID = (
    "14060219900101123"
    + CHECK[sum(int(c) * w for c, w in zip("14060219900101123", WEIGHTS, strict=True)) % 11]
)
GIVING = ("region_code", "birth_date", "gender")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    root = tmp_path_factory.mktemp("catalog")
    shutil.copytree(ROOT / "config", root / "config")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    yield load_catalog(Project(root).settings()).require_valid()


def ask(fields: list[str], masks: dict[str, object]) -> GrantRequest:
    return GrantRequest.model_validate(
        {
            "consumer": "mzj",
            "entry": "gongan.resident_population",
            "fields": fields,
            "masks": masks,
            "purpose": "data_verification",
            "legal_basis": "测试依据",
            "valid_from": T0,
            "valid_until": T0 + dt.timedelta(days=30),
        }
    )


def test_the_samples_old_grant_is_refused_naming_both_fields(catalog: Catalog) -> None:
    old = ask(
        ["citizen_id", "name", "birth_date", "region_code"],
        {"citizen_id": {"keep": {"first": 6, "last": 4}}},
    )
    problems = catalog_problems(catalog, old)
    assert len(problems) == 1
    assert "citizen_id keep first 6, last 4" in problems[0] and "birth_date" in problems[0]
    # Without birth_date the same mask leaves millions of candidates.
    assert (
        catalog_problems(
            catalog,
            ask(
                ["citizen_id", "name", "region_code"],
                {"citizen_id": {"keep": {"first": 6, "last": 4}}},
            ),
        )
        == []
    )


def test_the_check_digit_and_a_kept_everything_mask_are_refused(catalog: Catalog) -> None:
    only_check_hidden = ask(["citizen_id"], {"citizen_id": {"keep": {"first": 17, "last": 0}}})
    assert "1 possible value(s)" in catalog_problems(catalog, only_check_hidden)[0]
    one_digit = ask(["citizen_id"], {"citizen_id": {"keep": {"first": 16, "last": 1}}})
    assert "its check digit" in catalog_problems(catalog, one_digit)[0]
    everything = ask(["citizen_id"], {"citizen_id": {"keep": {"first": 10, "last": 8}}})
    assert "shows all 18 characters" in catalog_problems(catalog, everything)[0]
    # The default mask (first and last character) with region, birth date and gender granted:
    # the 3-digit sequence, half known by the gender, and the check digit leave ~46.
    default = ask(["citizen_id", *GIVING], {})
    assert "fewer than 1000" in catalog_problems(catalog, default)[0]


def test_a_request_from_before_the_layout_is_refused_at_approval(catalog: Catalog) -> None:
    entry = catalog.entries["gongan.resident_population"].entry
    request = ask(["citizen_id", "birth_date"], {"citizen_id": {"keep": {"first": 6, "last": 4}}})
    pending = new_grant("g-old", request, Actor(department="mzj", person="王"), T0)
    with pytest.raises(GrantError, match="birth_date") as info:
        approve(pending, entry, Actor(department="gongan", person="李"), T0, {"dsj"})
    assert info.value.code == "MASK_UNDONE"


def exact_candidates(view: list[set[str]], check: str | None) -> int:
    """IDs matching the view: 17 positions' possible digits, and the check character if seen."""
    counts = [0] * 11
    counts[0] = 1
    for position, digits in enumerate(view):
        after = [0] * 11
        for total, ways in enumerate(counts):
            if ways:
                for d in digits:
                    after[(total + int(d) * WEIGHTS[position]) % 11] += ways
        counts = after
    if check is None:
        return sum(counts)
    return sum(ways for total, ways in enumerate(counts) if CHECK[total] == check)


def consumer_view(first: int, last: int, visible: set[str]) -> tuple[list[set[str]], str | None]:
    kept = set(range(first)) | set(range(18 - last, 18))
    view = []
    for i in range(17):
        if (
            i in kept
            or (i < 6 and "region_code" in visible)
            or (6 <= i < 14 and "birth_date" in visible)
        ):
            view.append({ID[i]})
        elif i == 16 and "gender" in visible:
            view.append({d for d in "0123456789" if int(d) % 2 == int(ID[16]) % 2})
        else:
            view.append(set("0123456789"))
    return view, (ID[17] if 17 in kept else None)


@settings(max_examples=400, deadline=None)
@given(
    first=st.integers(0, 18),
    last=st.integers(0, 18),
    giving=st.lists(st.sampled_from(GIVING), unique=True),
    hidden_giving=st.lists(st.sampled_from(GIVING), unique=True),
    name=st.booleans(),
)
def test_no_accepted_grant_lets_the_full_id_be_rebuilt(
    catalog: Catalog,
    first: int,
    last: int,
    giving: list[str],
    hidden_giving: list[str],
    name: bool,
) -> None:
    fields = ["citizen_id", *giving, *(["name"] if name else [])]
    # Some giving fields granted but redacted: they give nothing away.
    masks: dict[str, object] = {f: "redact" for f in giving if f in hidden_giving}
    masks["citizen_id"] = {"keep": {"first": first, "last": last}}
    request = ask(fields, masks)
    problems = catalog_problems(catalog, request)
    entry = catalog.entries["gongan.resident_population"].entry
    shown = effective_masks(request, entry)
    visible = {f for f in giving if f not in shown or shown[f].kind == "keep"}
    view, check = consumer_view(first, last, visible)
    exact = exact_candidates(view, check)
    if not problems:
        assert exact >= MIN_CANDIDATES // 2, (first, last, sorted(visible), exact)
    elif first + last < 18:
        assert exact < MIN_CANDIDATES * 2, (first, last, sorted(visible), exact, problems)
