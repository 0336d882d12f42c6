"""docker-compose.yml stays consistent with the settings the code reads."""

import shutil
import subprocess

import pytest
import yaml

from exchange.config import ExchangeSettings
from tests.conftest import ROOT


def test_compose_overrides_name_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"kafka", "registry", "catalog-apply"} <= set(services)
    env = services["catalog-apply"]["environment"]
    for var in env:
        section, field = var.removeprefix("EXCHANGE_").lower().split("__")
        model = type(getattr(ExchangeSettings(), section))
        assert field in model.model_fields, f"{var} overrides no setting"
    assert services["registry"]["environment"]["APICURIO_STORAGE_KIND"] == "kafkasql"


def test_compose_runs_real_commands_and_prometheus_scrapes_their_ports() -> None:
    from exchange.cli.main import COMMANDS

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"router", "monitor", "prometheus", "grafana"} <= set(services)
    commands = set(COMMANDS)  # each loads (tests/unit/cli/test_main.py)
    exposed: dict[str, set[str]] = {}
    for name, service in services.items():
        if service.get("build") == ".":
            assert service["environment"]["EXCHANGE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
            if "command" in service:
                assert service["command"][0] in commands, f"{name}: no such exchange command"
                if service["command"][:2] == ["connector", "run"]:
                    assert (ROOT / service["command"][2]).is_file()
        exposed[name] = set(service.get("expose", []))
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), f"{name} mounts {volume}"
    scrape = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    targets = [
        t
        for job in scrape["scrape_configs"]
        for s in job.get("static_configs", [])
        for t in s["targets"]
    ]
    targets += [
        t
        for group in yaml.safe_load((ROOT / "config/prometheus/targets/connectors.yml").read_text())
        for t in group["targets"]
    ]
    assert len(targets) == 6
    for target in targets:
        host, port = target.split(":")
        assert port in exposed[host], f"Prometheus scrapes {target}, which {host} does not expose"
    settings = ExchangeSettings()
    assert "9310" in exposed["router"] and settings.router.metrics_port == 9310
    assert "9320" in exposed["monitor"] and settings.monitor.metrics_port == 9320
    for name in (
        "gongan-population",
        "scjg-legal-entities",
        "rsj-social-insurance",
        "mzj-marriage-push",
    ):
        port = yaml.safe_load((ROOT / f"config/connectors/{name}.yaml").read_text())["metrics"][
            "port"
        ]
        assert any(f":{port}" in t for t in targets), f"connector {name} (port {port}) not scraped"


def test_docker_compose_loads_with_the_loader_docker_compose_uses() -> None:
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
        [checker, str(ROOT / "docker-compose.yml")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
