import copy
from typing import Any

from exchange.catalog.avro import (
    backward_incompatibilities,
    envelope_schema,
    load_schema,
    record_fields,
)
from tests.conftest import ROOT

ENVELOPE = load_schema(ROOT / "schemas/avro/exchange/envelope.avsc")
PEOPLE = load_schema(ROOT / "schemas/avro/gongan/resident_population.avsc")


def changed(**fields: Any) -> dict[str, Any]:
    schema = copy.deepcopy(PEOPLE)
    for name, ftype in fields.items():
        existing = [f for f in schema["fields"] if f["name"] == name]
        if ftype is None:
            schema["fields"] = [f for f in schema["fields"] if f["name"] != name]
        elif existing:
            existing[0].update(ftype)
        else:
            schema["fields"].append({"name": name, **ftype})
    return schema


def test_envelope_wraps_the_record_as_nullable_after() -> None:
    env = envelope_schema("gongan.resident_population", PEOPLE, ENVELOPE)
    names = [f["name"] for f in env["fields"]]
    assert names == ["op", "after", "source", "ts_ms", "event_id"]
    after = env["fields"][1]
    assert after["type"][0] == "null" and after["default"] is None
    assert after["type"][1]["name"] == "ResidentPopulation"
    assert env["namespace"] == "gov.shuozhou.gongan"
    assert ENVELOPE["fields"][0]["name"] == "op" and len(ENVELOPE["fields"]) == 4  # not mutated


def test_record_fields() -> None:
    fields = record_fields(PEOPLE)
    assert fields["citizen_id"].is_string and not fields["citizen_id"].nullable
    assert fields["phone"].nullable and fields["phone"].is_string
    assert fields["birth_date"].logical_type == "date" and not fields["birth_date"].is_string


def test_new_optional_field_with_default_is_compatible() -> None:
    new = changed(email={"type": ["null", "string"], "default": None})
    assert backward_incompatibilities(new, PEOPLE) == []


def test_removing_a_field_is_compatible() -> None:
    assert backward_incompatibilities(changed(phone=None), PEOPLE) == []


def test_new_required_field_is_named() -> None:
    (problem,) = backward_incompatibilities(changed(email={"type": "string"}), PEOPLE)
    assert problem.startswith("email: new field without a default")


def test_type_change_is_named() -> None:
    (problem,) = backward_incompatibilities(changed(gender={"type": "int"}), PEOPLE)
    assert problem.startswith("gender: ") and "int" in problem and "string" in problem


def test_widening_is_compatible() -> None:
    old = changed(gender={"type": "int"})
    assert backward_incompatibilities(changed(gender={"type": "long"}), old) == []


def test_renamed_record_is_refused() -> None:
    new = copy.deepcopy(PEOPLE)
    new["name"] = "Person"
    (problem,) = backward_incompatibilities(new, PEOPLE)
    assert "renamed" in problem
