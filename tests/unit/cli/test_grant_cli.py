"""`exchange grant` on the secure platform: --as is the operator's alone (issue 22)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.cli.main import app
from tests.conftest import Project

runner = CliRunner()


@pytest.mark.parametrize("command", [["approve", "g1"], ["reject", "g1"], ["revoke", "g1"]])
def test_a_department_principal_is_sent_to_the_portal(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("x", encoding="utf-8")
    monkeypatch.setenv("EXCHANGE_KAFKA__SECURITY__PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("EXCHANGE_KAFKA__SECURITY__USERNAME", "consumer-mzj")
    monkeypatch.setenv("EXCHANGE_KAFKA__SECURITY__PASSWORD_FILE", str(secret))
    result = runner.invoke(
        app, ["--config", str(project.exchange_yaml), "grant", *command, "--as", "gongan"]
    )
    assert result.exit_code == 2, result.output
    said = re.sub(r"[│╭╮╰╯─\s]+", " ", result.output)  # rich's box, wrapped
    assert "runs as consumer-mzj, not as the platform operator" in said
    assert "exchange portal serve" in said
