"""The local platform: idempotent `up`, status, and schemas that survive a registry restart."""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.cli.main import app
from exchange.config import ExchangeSettings
from exchange.devplatform import LocalPlatform, PlatformError, processes
from exchange.devplatform.fetch import fetch_kafka
from exchange.devplatform.platform import cluster_id_arg, kafka_uuid
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


def test_storage_is_formatted_with_a_cluster_id_that_begins_with_a_dash(
    platform: ExchangeSettings, tmp_path: Path
) -> None:
    # One random id in 64 encodes to text beginning with "-" (CI once failed on it).
    value = next(
        str(u) for u in (uuid.uuid4() for _ in range(100_000)) if kafka_uuid(str(u))[0] == "-"
    )
    dev = platform.dev
    libs = fetch_kafka(platform.resolve(dev.cache_dir), dev.kafka_version, dev.log4j_version)
    props = tmp_path / "server.properties"
    props.write_text(
        "process.roles=broker,controller\nnode.id=1\n"
        "controller.quorum.bootstrap.servers=localhost:1\n"
        "listeners=PLAINTEXT://localhost:0,CONTROLLER://localhost:1\n"
        f"controller.listener.names=CONTROLLER\nlog.dirs={tmp_path / 'data'}\n",
        encoding="utf-8",
    )
    subprocess.run(
        [
            *("java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "--standalone"),
            *(cluster_id_arg(value), "-c", str(props)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    meta = (tmp_path / "data" / "meta.properties").read_text(encoding="utf-8")
    assert f"cluster.id={kafka_uuid(value)}\n" in meta
