"""Validation rules of catalog fields, as plain functions (no Kafka, no I/O)."""

from exchange.rules.checksums import citizen_id_problem, credit_code_problem
from exchange.rules.rules import (
    RULE_NAMES,
    CitizenIdRule,
    CreditCodeRule,
    PatternRule,
    RangeRule,
    RequiredRule,
    Rule,
    check_value,
    parse_rule,
)

__all__ = [
    "RULE_NAMES",
    "CitizenIdRule",
    "CreditCodeRule",
    "PatternRule",
    "RangeRule",
    "RequiredRule",
    "Rule",
    "check_value",
    "citizen_id_problem",
    "credit_code_problem",
    "parse_rule",
]
