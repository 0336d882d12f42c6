"""The local platform: idempotent `up`, status, and schemas that survive a registry restart."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.cli.main import app
from exchange.config import ExchangeSettings
from exchange.devplatform import LocalPlatform, PlatformError, processes
from exchange.kafka.registry import Registry
from tests.integration.conftest import IsolatedProject


def test_up_when_up_changes_nothing(platform: ExchangeSettings) -> None:
    local = LocalPlatform(platform)
    before = {s.name: s.pid for s in local.status()}
    after = {s.name: s.pid for s in local.up()}
    assert before == after and all(after.values())


def test_status_command(platform: ExchangeSettings) -> None:
    result = CliRunner().invoke(app, ["dev", "status"])
    assert result.exit_code == 0, result.output
    assert "kafka" in result.output and "running" in result.output


def test_schemas_survive_a_registry_restart(
    isolated: IsolatedProject, platform: ExchangeSettings
) -> None:
    settings = isolated.settings()
    apply_catalog(load_catalog(settings).require_valid(), settings)
    local = LocalPlatform(platform)
    registry_pid = next(s.pid for s in local.status() if s.name == "registry")
    assert registry_pid is not None
    processes.stop(registry_pid)
    assert next(s.state for s in local.status() if s.name == "registry") == "stopped"
    local.up()  # starts the registry again; kafka is left as it was
    latest = Registry(settings.registry).latest(isolated.subject)
    assert latest is not None and latest.version == 1


def test_a_taken_port_is_refused_clearly(platform: ExchangeSettings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        other = platform.model_copy(
            update={
                "dev": platform.dev.model_copy(
                    update={"kafka_port": port, "state_dir": platform.dev.state_dir / "other"}
                )
            }
        )
        with pytest.raises(PlatformError) as info:
            LocalPlatform(other).up()
    assert info.value.code == "PORT_TAKEN" and f"port {port} is taken" in str(info.value)


def test_open_data_is_not_started_in_secure_mode(platform: ExchangeSettings) -> None:
    with pytest.raises(PlatformError) as info:
        LocalPlatform(platform).up(secure_mode=True)
    assert info.value.code == "MODE_MISMATCH" and "dev down --purge" in str(info.value)
