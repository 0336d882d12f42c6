"""Field rules declared in the catalog, parsed from YAML and checked against values.

In a catalog file a field's ``rules`` is a list whose items are a bare name or a one-key mapping::

    rules: [required, citizen_id]
    rules: [required, {pattern: '^\\d{6}$'}, {range: {min: 0, max: 150}}]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchange.rules.checksums import citizen_id_problem, credit_code_problem


@dataclass(frozen=True)
class RequiredRule:
    name = "required"


@dataclass(frozen=True)
class CitizenIdRule:
    name = "citizen_id"


@dataclass(frozen=True)
class CreditCodeRule:
    name = "credit_code"


@dataclass(frozen=True)
class PatternRule:
    regex: str
    name = "pattern"

    def __post_init__(self) -> None:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(
                f"pattern {self.regex!r} is not a valid regular expression: {exc}"
            ) from exc


@dataclass(frozen=True)
class RangeRule:
    min: Decimal | None = None
    max: Decimal | None = None
    name = "range"

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ValueError("range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")


Rule = RequiredRule | CitizenIdRule | CreditCodeRule | PatternRule | RangeRule

_BARE: dict[str, Rule] = {
    "required": RequiredRule(),
    "citizen_id": CitizenIdRule(),
    "credit_code": CreditCodeRule(),
}
RULE_NAMES = (*_BARE, "pattern", "range")
#: Rules that apply to strings only; range applies to numbers only.
STRING_RULES = frozenset({"citizen_id", "credit_code", "pattern"})


def parse_rule(raw: Any) -> Rule:
    """One rule from its YAML form; ``ValueError`` says what is wrong with it."""
    if isinstance(raw, str):
        if raw in _BARE:
            return _BARE[raw]
        if raw in ("pattern", "range"):
            raise ValueError(f"rule {raw!r} needs arguments, e.g. {{{raw}: ...}}")
        raise ValueError(f"unknown rule {raw!r} (known: {', '.join(RULE_NAMES)})")
    if isinstance(raw, dict) and len(raw) == 1:
        ((name, arg),) = raw.items()
        if name == "pattern":
            if not isinstance(arg, str):
                raise ValueError("pattern takes a regular expression string")
            return PatternRule(arg)
        if name == "range":
            if not isinstance(arg, dict) or not set(arg) <= {"min", "max"}:
                raise ValueError("range takes a mapping with min and/or max")
            return RangeRule(_number(arg.get("min")), _number(arg.get("max")))
        if name in _BARE:
            return _BARE[name]
        raise ValueError(f"unknown rule {name!r} (known: {', '.join(RULE_NAMES)})")
    raise ValueError("a rule is a name or a one-key mapping such as {pattern: '^[0-9]+$'}")


def rule_to_raw(rule: Rule) -> Any:
    """The YAML form of a rule (inverse of :func:`parse_rule`)."""
    if isinstance(rule, PatternRule):
        return {"pattern": rule.regex}
    if isinstance(rule, RangeRule):
        bounds = {"min": rule.min, "max": rule.max}
        return {"range": {k: _plain(v) for k, v in bounds.items() if v is not None}}
    return rule.name


def _plain(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _number(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"range bound {value!r} is not a number")
    try:
        return Decimal(str(value))
    except ArithmeticError as exc:
        raise ValueError(f"range bound {value!r} is not a number") from exc


def check_value(rule: Rule, value: Any) -> str | None:
    """Why ``value`` breaks ``rule``, or ``None``. Only ``required`` objects to a null."""
    if isinstance(rule, RequiredRule):
        return "is required" if value is None or value == "" else None
    if value is None:
        return None
    if isinstance(rule, CitizenIdRule | CreditCodeRule | PatternRule):
        if not isinstance(value, str):
            return f"must be text for rule {rule.name}"
        if isinstance(rule, CitizenIdRule):
            return citizen_id_problem(value)
        if isinstance(rule, CreditCodeRule):
            return credit_code_problem(value)
        if re.fullmatch(rule.regex, value) is None:
            return f"does not match pattern {rule.regex}"
        return None
    return _check_range(rule, value)


def _check_range(rule: RangeRule, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        if isinstance(value, dt.date):
            return "range applies to numbers, not dates"
        return "must be a number for rule range"
    number = Decimal(str(value))
    if number.is_nan():
        # NaN compares with nothing (Decimal raises on it): it is in no range.
        return f"{value} is not a number"
    if rule.min is not None and number < rule.min:
        return f"{value} is below the minimum {rule.min}"
    if rule.max is not None and number > rule.max:
        return f"{value} is above the maximum {rule.max}"
    return None


Checker = Callable[[Any], "str | None"]


def checker(rule: Rule) -> Checker:
    """``check_value`` for one rule, with the rule's dispatch done once (per-row hot path)."""
    if isinstance(rule, CitizenIdRule | CreditCodeRule):
        problem = citizen_id_problem if isinstance(rule, CitizenIdRule) else credit_code_problem

        def check_code(value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, str):
                return f"must be text for rule {rule.name}"
            return problem(value)

        return check_code
    if isinstance(rule, PatternRule):
        match = re.compile(rule.regex).fullmatch

        def check_pattern(value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, str):
                return "must be text for rule pattern"
            return None if match(value) else f"does not match pattern {rule.regex}"

        return check_pattern
    return lambda value: check_value(rule, value)
