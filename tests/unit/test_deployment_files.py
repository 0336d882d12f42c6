"""docker-compose.yml stays consistent with the settings the code reads."""

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
