"""A secure local platform of its own (SASL/SCRAM over TLS, the KRaft authorizer, a protected
registry) on other ports, started once for the security tests and deleted afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.config import ExchangeSettings, load_settings
from exchange.devplatform import LocalPlatform
from tests.conftest import ROOT

PORTS = {"KAFKA_PORT": "19092", "CONTROLLER_PORT": "19093", "REGISTRY_PORT": "18081"}


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class SecurePlatform:
    def __init__(self, state: Path) -> None:
        self.dev_env = {f"EXCHANGE_DEV__{k}": v for k, v in PORTS.items()}
        self.dev_env["EXCHANGE_DEV__STATE_DIR"] = str(state)
        self.local = LocalPlatform(self.load(ROOT / "config" / "exchange.yaml", {}))

    def load(self, config: Path, principal_env: dict[str, str]) -> ExchangeSettings:
        """Settings of ``config`` as the principal whose environment is given."""
        with environ({**self.dev_env, **principal_env}):
            return load_settings(config)

    def env(self, principal: str) -> dict[str, str]:
        return env_file(self.local.env_file(principal))


@pytest.fixture(scope="session")
def secure_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePlatform]:
    state = tmp_path_factory.mktemp("secure-platform")
    platform = SecurePlatform(state)
    try:
        platform.local.up(secure_mode=True)
        yield platform
    finally:
        platform.local.down()
        shutil.rmtree(state, ignore_errors=True)
