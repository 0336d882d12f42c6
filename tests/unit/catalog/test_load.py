"""Every broken-catalog case is reported with its file, field path and line."""

from __future__ import annotations

import pytest

from exchange.catalog.load import load_catalog
from exchange.config import Problem
from tests.conftest import Project


def problems(project: Project) -> list[Problem]:
    return load_catalog(project.settings()).problems


def only(project: Project) -> Problem:
    found = problems(project)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def test_sample_catalog_is_valid(project: Project) -> None:
    result = load_catalog(project.settings())
    assert result.problems == []
    assert len(result.catalog.entries) >= 6
    providers = {e.entry.provider for e in result.catalog.entries.values()}
    assert len(providers) >= 5


def test_unknown_provider(project: Project) -> None:
    project.edit("config/catalog/scjg.yaml", "provider: scjg", "provider: gsj")
    found = problems(project)
    messages = {(p.path, p.message.split(" (")[0]) for p in found}
    assert ("entries[0].provider", "unknown provider 'gsj'") in messages
    p = next(p for p in found if p.path == "entries[0].provider")
    assert p.file.name == "scjg.yaml" and p.line == 6


def test_missing_schema_file(project: Project) -> None:
    (project.schemas / "mzj" / "marriage_registration.avsc").unlink()
    p = only(project)
    assert p.file.name == "mzj.yaml" and p.path == "entries[0].schema"
    assert "does not exist" in p.message and p.line == 7


def test_unparsable_schema_file(project: Project) -> None:
    project.write("schemas/avro/mzj/marriage_registration.avsc", '{"type": "record", "name": ')
    p = only(project)
    assert p.path == "entries[0].schema" and "is not JSON" in p.message


def test_schema_that_is_not_valid_avro(project: Project) -> None:
    project.edit(
        "schemas/avro/mzj/marriage_registration.avsc",
        '{"name": "registry_office", "type": "string"',
        '{"name": "registry_office", "type": "strnig"',
    )
    p = only(project)
    assert p.path == "entries[0].schema" and "not valid Avro" in p.message


def test_key_field_not_in_schema(project: Project) -> None:
    project.edit("config/catalog/zrzyj.yaml", "key: unit_no", "key: [unit_number]")
    p = only(project)
    assert (p.file.name, p.path) == ("zrzyj.yaml", "entries[0].key[0]")
    assert "key field 'unit_number' is not in schema" in p.message and p.line == 8


def test_duplicate_id(project: Project) -> None:
    text = (project.config / "catalog" / "fgw.yaml").read_text(encoding="utf-8")
    project.write("config/catalog/fgw_copy.yaml", text)
    p = only(project)
    assert p.file.name == "fgw_copy.yaml" and p.path == "entries[0].id"
    assert (
        "duplicate entry id 'fgw.credit_penalty' (first in" in p.message
        and "fgw.yaml:" in p.message
    )


@pytest.mark.parametrize(
    ("new_id", "message"),
    [
        ("fgw.credit/penalty", "not valid in a Kafka topic name"),
        ("fgw.信用处罚", "not valid in a Kafka topic name"),
        ("fgw." + "x" * 250, "longer than 249"),
        ("scjg.credit_penalty", "must be <provider>.<name> with provider 'fgw'"),
    ],
)
def test_id_not_valid_as_topic_name(project: Project, new_id: str, message: str) -> None:
    project.edit("config/catalog/fgw.yaml", "id: fgw.credit_penalty", f"id: {new_id}")
    p = only(project)
    assert (p.file.name, p.path, p.line) == ("fgw.yaml", "entries[0].id", 3)
    assert message in p.message


def test_unknown_rule(project: Project) -> None:
    project.edit(
        "config/catalog/gongan.yaml",
        "name: {sensitivity: sensitive, rules: [required]}",
        "name: {sensitivity: sensitive, rules: [required, chinese_name]}",
    )
    p = only(project)
    assert p.path == "entries[0].fields.name.rules"
    assert "unknown rule 'chinese_name'" in p.message and p.line == 26


def test_rule_on_field_that_does_not_exist(project: Project) -> None:
    project.edit(
        "config/catalog/gongan.yaml",
        "      phone: {sensitivity: sensitive",
        "      mobile: {sensitivity: sensitive",
    )
    p = only(project)
    assert p.path == "entries[0].fields.mobile" and p.line == 32
    assert "field 'mobile' is not in schema gongan/resident_population.avsc" in p.message


def test_rule_that_does_not_fit_the_field_type(project: Project) -> None:
    project.edit(
        "config/catalog/gongan.yaml",
        "birth_date: {sensitivity: internal, rules: [required]}",
        "birth_date: {sensitivity: internal, rules: [required, citizen_id]}",
    )
    p = only(project)
    assert p.path == "entries[0].fields.birth_date.rules[1]"
    assert "rule citizen_id needs a string field" in p.message


def test_bad_yaml_names_the_line(project: Project) -> None:
    project.edit("config/catalog/rsj.yaml", "    sharing: conditional", "    sharing: [conditional")
    p = only(project)
    assert p.file.name == "rsj.yaml" and p.path == "(yaml)"
    assert p.line is not None and p.line >= 9 and "invalid YAML" in p.message


def test_duplicate_yaml_key(project: Project) -> None:
    project.edit(
        "config/catalog/rsj.yaml", "    partitions: 3\n", "    partitions: 3\n    partitions: 6\n"
    )
    p = only(project)
    assert (p.path, p.line) == ("entries[0].partitions", 12)
    assert "duplicate key (first at line 11)" in p.message


def test_wrong_type_and_unknown_field(project: Project) -> None:
    project.edit("config/catalog/scjg.yaml", "partitions: 3", "partitions: many\n    colour: blue")
    found = {(p.path, p.line): p.message for p in problems(project)}
    assert "valid integer" in found[("entries[0].partitions", 11)]
    assert found[("entries[0].colour", 12)] == "unknown field"


def test_missing_required_field_points_at_its_entry(project: Project) -> None:
    project.edit("config/catalog/scjg.yaml", "    sharing: unconditional\n", "")
    p = only(project)
    assert p.path == "entries[0].sharing" and p.message == "required field is missing"
    assert p.line == 3  # the entry's own line: a missing key has none


def test_unknown_department_field_and_duplicate(project: Project) -> None:
    project.edit(
        "config/departments.yaml",
        'level: county, region_code: "140602"',
        'level: district, region_code: "140602"',
    )
    p = only(project)
    assert p.file.name == "departments.yaml" and p.path == "departments[9].level"


def test_every_problem_is_reported_at_once(project: Project) -> None:
    project.edit("config/catalog/scjg.yaml", "provider: scjg", "provider: gsj")
    project.edit("config/catalog/zrzyj.yaml", "key: unit_no", "key: [unit_number]")
    (project.schemas / "mzj" / "marriage_registration.avsc").unlink()
    files = {p.file.name for p in problems(project)}
    assert {"scjg.yaml", "zrzyj.yaml", "mzj.yaml"} <= files


def test_problem_text_names_file_line_and_path(project: Project) -> None:
    project.edit("config/catalog/zrzyj.yaml", "key: unit_no", "key: [unit_number]")
    text = str(only(project))
    assert text.startswith(
        str(project.config / "catalog" / "zrzyj.yaml") + ":8: entries[0].key[0]: "
    )


def test_department_with_unknown_parent(project: Project) -> None:
    project.edit("config/departments.yaml", "parent: mzj}", "parent: minzheng}")
    p = only(project)
    assert (p.path, p.line) == ("departments[10].parent", 13)
    assert p.message == "unknown department 'minzheng'"
