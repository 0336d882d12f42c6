"""The CLI as a user runs it (no broker: validate and the offline list)."""

from typer.testing import CliRunner

from exchange.cli.main import app
from tests.conftest import Project

runner = CliRunner()


def test_validate_the_sample_catalog(project: Project) -> None:
    result = runner.invoke(app, ["--config", str(project.exchange_yaml), "catalog", "validate"])
    assert result.exit_code == 0, result.output
    assert "catalog valid: 6 entries" in result.output


def test_validate_reports_every_problem_and_exits_1(project: Project) -> None:
    project.edit("config/catalog/scjg.yaml", "provider: scjg", "provider: gsj")
    project.edit("config/catalog/zrzyj.yaml", "key: unit_no", "key: [unit_number]")
    result = runner.invoke(app, ["--config", str(project.exchange_yaml), "catalog", "validate"])
    assert result.exit_code == 1
    assert "scjg.yaml:6: entries[0].provider: unknown provider 'gsj'" in result.output
    assert "zrzyj.yaml:8: entries[0].key[0]: key field 'unit_number'" in result.output
    assert "2 problem(s)" in result.output


def test_list_offline_prints_a_table(project: Project) -> None:
    result = runner.invoke(
        app, ["--config", str(project.exchange_yaml), "catalog", "list", "--offline"]
    )
    assert result.exit_code == 0, result.output
    assert "gongan.resident_population" in result.output and "人口基础信息" in result.output


def test_bad_config_file_is_reported_with_its_path(project: Project) -> None:
    project.write("config/exchange.yaml", "kafka: [1, 2\n")
    result = runner.invoke(app, ["--config", str(project.exchange_yaml), "catalog", "validate"])
    assert result.exit_code == 1
    assert "exchange.yaml" in result.output and "invalid YAML" in result.output
