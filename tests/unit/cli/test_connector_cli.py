"""``exchange connector`` errors that need no broker: a bad connector file."""

from typer.testing import CliRunner

from exchange.cli.main import app
from tests.conftest import Project

runner = CliRunner()


def test_a_bad_connector_file_is_named_with_line_and_field(project: Project) -> None:
    file = project.edit(
        "config/connectors/scjg-legal-entities.yaml", "mode: upsert", "mode: append"
    )
    for command in ("check", "run"):
        result = runner.invoke(
            app, ["--config", str(project.exchange_yaml), "connector", command, str(file)]
        )
        assert result.exit_code == 1, result.output
        assert (
            "scjg-legal-entities.yaml:11: source.mode: Input should be 'snapshot'" in result.output
        )


def test_a_missing_connector_file(project: Project) -> None:
    result = runner.invoke(
        app, ["--config", str(project.exchange_yaml), "connector", "check", "nope.yaml"]
    )
    assert result.exit_code == 1
    assert "nope.yaml" in result.output


def test_a_wrong_log_level_is_a_usage_error(project: Project) -> None:
    file = project.root / "config/connectors/scjg-legal-entities.yaml"
    result = runner.invoke(
        app,
        ["--config", str(project.exchange_yaml), "connector", "run", str(file), "--log-level", "x"],
    )
    assert result.exit_code == 2
    assert "use debug, info, warning or error" in result.output
