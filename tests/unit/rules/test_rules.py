import datetime as dt
from decimal import Decimal

import pytest

from exchange.rules import (
    CitizenIdRule,
    PatternRule,
    RangeRule,
    RequiredRule,
    check_value,
    parse_rule,
)
from exchange.rules.rules import rule_to_raw


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("required", RequiredRule()),
        ("citizen_id", CitizenIdRule()),
        ({"pattern": "^[0-9]{6}$"}, PatternRule("^[0-9]{6}$")),
        ({"range": {"min": 0, "max": 150}}, RangeRule(Decimal(0), Decimal(150))),
        ({"range": {"min": 0.5}}, RangeRule(Decimal("0.5"), None)),
    ],
)
def test_parse_and_dump_round_trip(raw: object, rule: object) -> None:
    assert parse_rule(raw) == rule
    assert parse_rule(rule_to_raw(parse_rule(raw))) == rule  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("checksum", "unknown rule 'checksum'"),
        ({"lenght": 3}, "unknown rule 'lenght'"),
        ("pattern", "needs arguments"),
        ({"pattern": "(["}, "not a valid regular expression"),
        ({"range": {}}, "min, max or both"),
        ({"range": {"min": 5, "max": 1}}, "above max"),
        ({"range": {"min": "abc"}}, "not a number"),
        (["required"], "a rule is a name or a one-key mapping"),
    ],
)
def test_bad_rules_say_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rule(raw)
    assert message in str(info.value)


def test_required() -> None:
    assert check_value(RequiredRule(), None) == "is required"
    assert check_value(RequiredRule(), "") == "is required"
    assert check_value(RequiredRule(), "x") is None


def test_other_rules_leave_nulls_to_required() -> None:
    for rule in (CitizenIdRule(), PatternRule("^x$"), RangeRule(Decimal(0), None)):
        assert check_value(rule, None) is None


def test_pattern_matches_whole_value() -> None:
    rule = PatternRule(r"\d{6}")
    assert check_value(rule, "140602") is None
    assert check_value(rule, "1406021") == r"does not match pattern \d{6}"
    assert check_value(rule, 140602) == "must be text for rule pattern"


def test_range() -> None:
    rule = RangeRule(Decimal(0), Decimal(100))
    assert check_value(rule, 0) is None
    assert check_value(rule, Decimal("100.00")) is None
    assert check_value(rule, 100.01) == "100.01 is above the maximum 100"
    assert check_value(rule, -1) == "-1 is below the minimum 0"
    assert check_value(rule, "5") == "must be a number for rule range"
    assert check_value(rule, True) == "must be a number for rule range"
    assert check_value(rule, dt.date(2020, 1, 1)) == "range applies to numbers, not dates"


def test_citizen_id_rule_uses_the_checksum() -> None:
    assert check_value(CitizenIdRule(), "11010519491231002X") is None
    assert "expected X" in str(check_value(CitizenIdRule(), "110105194912310021"))
