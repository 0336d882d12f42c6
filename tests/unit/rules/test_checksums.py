import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.rules.checksums import (
    CREDIT_CODE_ALPHABET,
    citizen_id_problem,
    credit_code_problem,
    make_citizen_id,
    make_credit_code,
)

TODAY = dt.date(2026, 11, 24)


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002X",  # GB 11643-1999's own examples
        "440524188001010014",
        "11010519491231002x",  # lower-case x is accepted
        "110101199003074477",
    ],
)
def test_valid_citizen_ids(value: str) -> None:
    assert citizen_id_problem(value, today=TODAY) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("110105194912310021", "check character is 1, expected X"),
        ("11010519491231002", "18 characters, not 17"),
        ("1101051949123100A2", "17 digits"),
        ("11010519491231002Y", "digit or X"),
        ("110105194902300028", "birth date 19490230 is not a date"),
        ("990105194912310021", "no province 99"),
        ("110105203001010010", "out of range"),  # born after TODAY
    ],
)
def test_invalid_citizen_ids(value: str, reason: str) -> None:
    problem = citizen_id_problem(value, today=TODAY)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "value",
    [
        "91350100M000100Y43",  # GB 32100-2015's example
        "91110000710925462X",
        "91330100716105852F",
        "9144030071526726XG",
        "91440300708461136T",
    ],
)
def test_valid_credit_codes(value: str) -> None:
    assert credit_code_problem(value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("91350100M000100Y44", "check character is 4, expected 3"),
        ("91350100M000100Y4", "18 characters"),
        ("91350100M0001O0Y43", "outside GB 32100's alphabet: O"),
        ("913501I0M000100Y43", "alphabet: I"),
        ("91AB0100M000100Y43", "region part AB0100"),
    ],
)
def test_invalid_credit_codes(value: str, reason: str) -> None:
    problem = credit_code_problem(value)
    assert problem is not None and reason in problem


@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY),
    st.integers(min_value=0, max_value=999),
    st.integers(min_value=0, max_value=9),
)
def test_any_single_digit_change_breaks_a_citizen_id(birth: dt.date, seq: int, digit: int) -> None:
    value = make_citizen_id("140602", birth, seq)
    assert citizen_id_problem(value, today=TODAY) is None
    # Changing the sequence's last digit must be caught by the check character.
    changed = value[:16] + str(digit) + value[17]
    assert (citizen_id_problem(changed, today=TODAY) is None) == (changed == value)


@given(st.text(alphabet=CREDIT_CODE_ALPHABET, min_size=9, max_size=9))
def test_made_credit_codes_are_valid_and_a_changed_char_is_not(org: str) -> None:
    value = make_credit_code("91140600" + org)
    assert credit_code_problem(value) is None
    swapped = "1" if value[10] != "1" else "2"
    assert credit_code_problem(value[:10] + swapped + value[11:]) is not None
