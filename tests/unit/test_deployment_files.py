"""The compose files stay consistent with the settings and commands the code has, and with the
files `exchange deploy secure-files` writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from exchange.cli.main import COMMANDS, app
from exchange.config import ExchangeSettings
from exchange.devplatform import secure
from tests.conftest import ROOT

SECURE = "docker-compose.yml"
OPEN = "docker-compose.open.yml"


def services(name: str) -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    return dict(compose["services"])


def test_the_open_compose_overrides_name_real_settings() -> None:
    found = services(OPEN)
    assert {"kafka", "registry", "catalog-apply"} <= set(found)
    env = found["catalog-apply"]["environment"]
    for var in env:
        section, field = var.removeprefix("EXCHANGE_").lower().split("__")
        model = type(getattr(ExchangeSettings(), section))
        assert field in model.model_fields, f"{var} overrides no setting"
    assert found["registry"]["environment"]["APICURIO_STORAGE_KIND"] == "kafkasql"
    for service in found.values():
        if service.get("build") == ".":
            assert service["environment"]["EXCHANGE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"


@pytest.mark.parametrize("name", [SECURE, OPEN])
def test_compose_runs_real_commands_and_prometheus_scrapes_their_ports(name: str) -> None:
    found = services(name)
    assert {"router", "monitor", "prometheus", "grafana"} <= set(found)
    exposed: dict[str, set[str]] = {}
    for service_name, service in found.items():
        if service.get("build") == "." and "command" in service:
            command = service["command"]
            assert command[0] in COMMANDS, f"{service_name}: no such exchange command"
            if command[:2] == ["connector", "run"]:
                assert (ROOT / command[2]).is_file()
        exposed[service_name] = set(service.get("expose", []))
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), f"{service_name} mounts {volume}"
    targets = _scrape_targets()
    assert len(targets) == 7
    for target in targets:
        host, port = target.split(":")
        assert port in exposed[host], f"Prometheus scrapes {target}, which {host} does not expose"
    settings = ExchangeSettings()
    assert "9310" in exposed["router"] and settings.router.metrics_port == 9310
    assert "9320" in exposed["monitor"] and settings.monitor.metrics_port == 9320
    assert "9330" in exposed["quality"] and settings.quality.metrics_port == 9330
    for connector in (
        "gongan-population",
        "scjg-legal-entities",
        "rsj-social-insurance",
        "mzj-marriage-push",
    ):
        config = yaml.safe_load((ROOT / f"config/connectors/{connector}.yaml").read_text())
        port = config["metrics"]["port"]
        assert any(f":{port}" in t for t in targets), f"connector {connector} (port {port})"


def _scrape_targets() -> list[str]:
    scrape = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    targets = [
        t
        for job in scrape["scrape_configs"]
        for s in job.get("static_configs", [])
        for t in s["targets"]
    ]
    connectors = yaml.safe_load((ROOT / "config/prometheus/targets/connectors.yml").read_text())
    return targets + [t for group in connectors for t in group["targets"]]


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the compose file's `secrets` job writes, written here."""
    folder = tmp_path_factory.mktemp("secrets")
    job = services(SECURE)["secrets"]["command"]
    assert job[:2] == ["deploy", "secure-files"]
    args = [folder.as_posix() if a == "/secrets" else a for a in job]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return folder


def test_every_secret_the_secure_compose_names_is_written_by_its_secrets_job(
    secrets: Path,
) -> None:
    text = (ROOT / SECURE).read_text(encoding="utf-8")
    named = set(re.findall(r"/secrets/[\w./$-]+\w", text))
    # Department credentials are issued by platform-setup (`dept credentials --out`).
    made_later = {n for n in named if n.startswith("/secrets/departments/")}
    for path in sorted(named - made_later):
        assert (secrets / path.removeprefix("/secrets/")).exists(), f"{path} is not written"
    assert made_later and (secrets / "departments").is_dir()


def _secret_mounts(service: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(target, subpath) of each mount of the secrets volume."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            if volume.startswith("secrets:"):
                out.append((volume.split(":")[1], None))
        elif volume.get("source") == "secrets":
            out.append((volume["target"], volume.get("volume", {}).get("subpath")))
    return out


def test_each_container_mounts_only_its_own_secrets(secrets: Path) -> None:
    found = services(SECURE)
    setup = " ".join(found["platform-setup"]["entrypoint"])
    issued = set(re.search(r"for d in ([\w ]+);", setup).group(1).split())  # type: ignore[union-attr]
    for name, service in found.items():
        mounts = _secret_mounts(service)
        if name == "secrets":
            continue  # it writes them
        assert all(sub is not None for _t, sub in mounts), f"{name} mounts every secret"
        for target, sub in mounts:
            assert target == f"/secrets/{sub}", f"{name}: {sub} at {target}"
        env_file = (service.get("environment") or {}).get("EXCHANGE_ENV_FILE")
        if service.get("build") != "." or name == "principals":
            continue
        assert env_file, f"{name} names no principal"
        folder = str(Path(env_file).parent)
        principal = Path(env_file).stem
        assert folder in {t for t, _s in mounts}, f"{name} does not mount {folder}"
        if folder.startswith("/secrets/principals/"):
            assert principal in secure.SCRAM_PRINCIPALS
            assert (secrets / folder.removeprefix("/secrets/") / f"{principal}.env").is_file()
        else:
            department = principal.removeprefix("connector-")
            assert department in issued, f"{name}: nobody issues {principal}"
    env = dict(
        line.split("=", 1)
        for line in (secrets / "principals/router/router.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert env["EXCHANGE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["EXCHANGE_REGISTRY__URL"].startswith("https://registry:8443/")
    assert env["EXCHANGE_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL"
    own = f"{secrets}/principals/router/"  # /secrets in the container
    for setting in ("PASSWORD_FILE", "CA_FILE"):
        assert env[f"EXCHANGE_KAFKA__SECURITY__{setting}"].startswith(own)
    assert env["EXCHANGE_ROUTER__SALT_SECRET_FILE"].startswith(own)
    assert found["registry"]["ports"] == ["8443:8443"]
    # Dashboards' labels say who receives what: on the host's loopback only.
    assert found["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert found["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


def test_the_secure_brokers_settings_fit_its_container(secrets: Path) -> None:
    props = dict(
        line.split("=", 1)
        for line in (secrets / "kafka" / "server.properties").read_text().splitlines()
        if "=" in line
    )
    kafka = services(SECURE)["kafka"]
    data = next(
        v.split(":")[1]
        for v in kafka["volumes"]
        if isinstance(v, str) and v.startswith("kafka-data:")
    )
    assert props["log.dirs"] == data
    assert props["advertised.listeners"] == "SASL_SSL://kafka:9092"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    registry = (secrets / "registry" / "application.properties").read_text()
    assert "quarkus.http.ssl-port=8443" in registry
    assert "quarkus.http.auth.permission.read.policy=readers" in registry


@pytest.mark.parametrize("name", [SECURE, OPEN])
def test_compose_files_load_with_the_loader_docker_compose_uses(name: str) -> None:
    """compose-go (what `docker compose` itself parses with) reads the file: a schema error or
    an interpolation it refuses shows here, not on an operator's host. The checker builds from
    `../shared/tools/composecheck` (Go and the module proxy); in CI it must be there."""
    build = ROOT.parent / "shared" / "tools" / "composecheck" / "build.sh"
    if not build.is_file() or shutil.which("go") is None:
        pytest.skip(f"the compose checker ({build}) or Go is not on this machine")
    checker = subprocess.run(
        ["bash", str(build)], capture_output=True, text=True, check=True, timeout=600
    ).stdout.strip()
    result = subprocess.run(
        [checker, str(ROOT / name)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
