"""``config/exchange.yaml``: where the platform is and how clients talk to it.

Values come from the YAML file, and any of them can be overridden from the environment with
``EXCHANGE_<SECTION>__<FIELD>`` (e.g. ``EXCHANGE_KAFKA__BOOTSTRAP_SERVERS``), which wins over the
file. Relative paths in the file are relative to the file's own folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exchange.config.problems import ConfigError, Problem, problems_from_validation
from exchange.config.yamlfile import load_yaml

DEFAULT_CONFIG = Path("config/exchange.yaml")
CONFIG_ENV = "EXCHANGE_CONFIG_FILE"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = "localhost:9092"
    client_id: str = "exchange"
    #: Extra librdkafka properties for every client (security.protocol, sasl.*, ssl.*, ...).
    client: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: How long admin and metadata calls may take before they fail, in seconds.
    request_timeout_s: float = Field(15.0, gt=0)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration for one client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
        }
        conf.update(self.client)
        conf.update(overrides)
        return conf


class RegistrySettings(_Section):
    #: Confluent-compatible API root (Apicurio: ``/apis/ccompat/v7``).
    url: str = "http://localhost:8081/apis/ccompat/v7"
    timeout_s: float = Field(10.0, gt=0)
    #: Extra schema-registry client settings (basic.auth.user.info, ssl.ca.location, ...).
    client: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class TopicSettings(_Section):
    """Names of the control topics and the prefixes of data topics."""

    catalog: str = "exchange.catalog"
    grants: str = "exchange.grants"
    audit: str = "exchange.audit"
    dlq: str = "exchange.dlq"
    connector_offsets: str = "exchange.connector-offsets"
    #: The router's backfill progress and hand-over offsets, per grant and source partition.
    router_backfills: str = "exchange.router-backfills"
    source_prefix: str = "src."
    delivery_prefix: str = "dlv."
    #: 1 for the single local broker; 3 in production.
    replication_factor: int = Field(1, ge=1)
    #: How long rejected records are kept on the DLQ, in days.
    dlq_retention_days: int = Field(30, ge=1)


class PathSettings(_Section):
    departments: Path = Path("departments.yaml")
    catalog: Path = Path("catalog")
    schemas: Path = Path("../schemas/avro")
    grants: Path = Path("grants")


class GrantSettings(_Section):
    #: Platform operator departments (e.g. the 大数据局): may approve any conditional grant.
    operators: tuple[str, ...] = ()
    #: Approve requests for unconditional (无条件共享) entries at once.
    auto_approve_unconditional: bool = True


class AuditSettings(_Section):
    #: ``sm3`` (GB/T 32905) for deployments that require national cryptography.
    algorithm: Literal["sha256", "sm3"] = "sha256"
    #: Secret key sealing every event (HMAC), so nobody without it can forge one. Without a key
    #: the chain still shows changed, dropped and reordered events, but not a forged tail.
    key_file: Path | None = None


class RouterSettings(_Section):
    #: Consumer group of the router workers; workers of one group share the source partitions.
    group_id: str = "exchange-router"
    metrics_port: int = Field(9310, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    #: Records handled together: one delivery receipt per grant and source partition per batch.
    batch_size: int = Field(500, ge=1)
    batch_wait_s: float = Field(0.2, gt=0)
    #: How often grants are checked for expiry and changes, even when no record arrives.
    grant_check_interval_s: float = Field(1.0, gt=0)
    #: A worker silent this long leaves the group and its partitions go to the others; after
    #: a crash, the restarted worker waits this long for its old self to be dropped.
    session_timeout_s: float = Field(10.0, ge=6, le=300)
    #: Backfills of newly active grants read at the same time, per worker.
    backfill_concurrency: int = Field(2, ge=1)
    #: faust's working folder (one sub-folder per worker).
    data_dir: Path = Path("../.exchange/router")


class MonitorSettings(_Section):
    """``exchange monitor``: the platform's figures from Kafka (volumes, lag, grants, audit)."""

    metrics_port: int = Field(9320, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    #: How often the figures are taken from Kafka (a scrape serves the latest ones).
    interval_s: float = Field(15.0, ge=1)


class DevPlatformSettings(_Section):
    """The local platform started by ``exchange dev up`` (development, demo and tests)."""

    kafka_version: str = "4.1.1"
    #: 3.0.x is the newest line that runs on Java 17, the JDK our machines have.
    apicurio_version: str = "3.0.9"
    log4j_version: str = "2.24.3"
    kafka_port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    registry_port: int = Field(8081, ge=1, le=65535)
    kafka_heap_mb: int = Field(512, ge=128)
    registry_heap_mb: int = Field(512, ge=128)
    #: Downloads (shared by every checkout): Kafka's classpath and the registry.
    cache_dir: Path = Path("~/.cache/exchange")
    #: Runtime state of this checkout: broker data, logs, pid files.
    state_dir: Path = Path("../.exchange")
    start_timeout_s: float = Field(120.0, gt=0)


class ExchangeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EXCHANGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    grants: GrantSettings = Field(default_factory=GrantSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    dev: DevPlatformSettings = Field(default_factory=DevPlatformSettings)
    #: The folder relative paths are resolved against (the config file's folder).
    base_dir: Path = Path(".")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats the file: an operator overrides one value without editing YAML.
        return env_settings, init_settings

    def resolve(self, path: Path) -> Path:
        """A configured path made absolute: ``~`` expanded, relative to the config file's folder."""
        path = path.expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def departments_file(self) -> Path:
        return self.resolve(self.paths.departments)

    @property
    def catalog_dir(self) -> Path:
        return self.resolve(self.paths.catalog)

    @property
    def schemas_dir(self) -> Path:
        return self.resolve(self.paths.schemas)

    @property
    def grants_dir(self) -> Path:
        return self.resolve(self.paths.grants)


def config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    return Path(os.environ.get(CONFIG_ENV, str(DEFAULT_CONFIG)))


def load_settings(file: Path | None = None) -> ExchangeSettings:
    """Load ``exchange.yaml`` (or ``$EXCHANGE_CONFIG_FILE``) with env overrides.

    A missing file is an error unless it is the default one, so a typo in ``--config`` is never
    silently replaced by defaults.
    """
    path = config_path(file)
    data: dict[str, Any] = {}
    lines = {}
    if path.exists() or file is not None or CONFIG_ENV in os.environ:
        doc = load_yaml(path)
        if doc.data is not None and not isinstance(doc.data, dict):
            raise ConfigError([Problem(path, "(top level)", "must be a mapping of sections")])
        data = doc.data or {}
        lines = doc.lines
    try:
        return ExchangeSettings(**data, base_dir=path.parent.resolve())
    except ValidationError as exc:
        problems = problems_from_validation(exc, path, lines, data)
        raise ConfigError([_mention_env(p) for p in problems]) from exc


def _mention_env(problem: Problem) -> Problem:
    """If an env var overrides the field, say so: the file may not be where the value came from."""
    var = "EXCHANGE_" + problem.path.replace(".", "__").upper()
    if var in os.environ:
        return Problem(problem.file, problem.path, f"{problem.message} (from ${var})", problem.line)
    return problem
