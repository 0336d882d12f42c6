"""``config/exchange.yaml``: where the platform is and how clients talk to it.

Values come from the YAML file, and any of them can be overridden from the environment with
``EXCHANGE_<SECTION>__<FIELD>`` (e.g. ``EXCHANGE_KAFKA__BOOTSTRAP_SERVERS``), which wins over the
file. Relative paths in the file are relative to the file's own folder.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exchange.config.problems import ConfigError, Problem, problems_from_validation
from exchange.config.yamlfile import load_yaml
from exchange.quality.calendar import parse_deadline

DEFAULT_CONFIG = Path("config/exchange.yaml")
CONFIG_ENV = "EXCHANGE_CONFIG_FILE"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSecurity(_Section):
    """Who this process is on the broker, and how it knows the broker is the right one.

    The password is read from a file, never from the YAML or the environment: files can be
    mounted as secrets with mode 0600, while environments leak into child processes and
    ``/proc/<pid>/environ``.
    """

    #: ``PLAINTEXT`` for the open local platform; ``SASL_SSL`` for ``dev up --secure`` and
    #: production (SCRAM over TLS).
    protocol: Literal["PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    #: The SCRAM principal, e.g. ``operator``, ``router``, ``connector-gongan``.
    username: str | None = None
    password_file: Path | None = None
    #: The CA that signed the broker's certificate (PEM); the system's CAs when unset.
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.protocol == "SASL_SSL" and (self.username is None or self.password_file is None):
            raise ValueError("SASL_SSL needs username and password_file")
        return self

    @property
    def password(self) -> str | None:
        if self.protocol == "PLAINTEXT" or self.password_file is None:
            return None
        return read_secret(self.password_file, "kafka.security.password_file")


class KafkaSettings(_Section):
    bootstrap_servers: str = "localhost:9092"
    client_id: str = "exchange"
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    #: Extra librdkafka properties for every client (socket, tuning, ...); they win over the
    #: ones derived from ``security``.
    client: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: How long admin and metadata calls may take before they fail, in seconds.
    request_timeout_s: float = Field(15.0, gt=0)
    #: The router hands its deliveries to librdkafka directly (the library confluent-kafka
    #: loaded, on the same producer: 0.26 µs a delivery instead of 0.7, without the GIL).
    #: ``false`` produces them through confluent-kafka's ``produce`` only.
    native_produce: bool = True

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration for one client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
        }
        sec = self.security
        if sec.protocol == "SASL_SSL":
            conf.update(
                {
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanism": sec.mechanism,
                    "sasl.username": sec.username,
                    "sasl.password": sec.password,
                    # Verify the broker's name against its certificate (librdkafka's default
                    # since 2.0; stated so an old library cannot silently skip it).
                    "ssl.endpoint.identification.algorithm": "https",
                }
            )
            if sec.ca_file is not None:
                conf["ssl.ca.location"] = str(sec.ca_file)
        conf.update(self.client)
        conf.update(overrides)
        return conf


class RegistrySettings(_Section):
    #: Confluent-compatible API root (Apicurio: ``/apis/ccompat/v7``).
    url: str = "http://localhost:8081/apis/ccompat/v7"
    #: Seconds to connect, and to wait for each answer.
    timeout_s: float = Field(10.0, gt=0)
    #: Tries again after a refused connection, a timeout, or 408/429/5xx, waiting 1, 2, 4 ...
    #: seconds (jittered, at most 20): a restarting registry costs a pause, not an error.
    retries: int = Field(3, ge=0, le=10)
    #: HTTP basic credentials: the platform's registering principals have their own; every
    #: other principal the shared read-only login (see docs/security.md).
    username: str | None = None
    password_file: Path | None = None
    #: The operator's: the read-only login `exchange dept credentials` hands to departments.
    reader_username: str = "registry-reader"
    reader_password_file: Path | None = None
    #: The CA that signed the registry's certificate (PEM), for an ``https://`` URL.
    ca_file: Path | None = None
    #: A client certificate and its key (PEM), for a registry that asks for one (mutual TLS).
    cert_file: Path | None = None
    key_file: Path | None = None

    @field_validator(
        "username",
        "password_file",
        "reader_password_file",
        "ca_file",
        "cert_file",
        "key_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # An empty EXCHANGE_REGISTRY__USERNAME= clears a login inherited from the environment.
        return None if value == "" else value

    @model_validator(mode="after")
    def _pairs(self) -> RegistrySettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self

    def basic_auth(self) -> str | None:
        """``user:password`` for HTTP basic authentication, or ``None`` without a login."""
        if self.username is None or self.password_file is None:
            return None
        return f"{self.username}:{read_secret(self.password_file, 'registry.password_file')}"

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
    #: Prefix of the connectors' saved positions: ``<this>.<department>``, one per department.
    connector_offsets: str = "exchange.connector-offsets"
    #: The public keys that sign audit events, per principal; only the operator writes it.
    audit_keys: str = "exchange.audit-keys"
    #: The router's backfill progress and hand-over offsets, per grant and source partition.
    router_backfills: str = "exchange.router-backfills"
    #: Prefix of the router's per-key state changelogs: ``<this>.<entry>``, compacted, one
    #: partition per source partition; only the router reads or writes them.
    router_state: str = "exchange.router-state"
    #: The portal's people, department tokens, sessions and login lockouts (compacted, JSON;
    #: only the portal reads or writes them: they hold password hashes).
    portal_accounts: str = "exchange.portal-accounts"
    portal_tokens: str = "exchange.portal-tokens"
    portal_sessions: str = "exchange.portal-sessions"
    portal_lockouts: str = "exchange.portal-lockouts"
    #: 供需对接清单: data departments need, and the answers (compacted, JSON; all may read).
    portal_demands: str = "exchange.portal-demands"
    #: Notices to departments (their inbox) and their webhooks' addresses and secrets.
    portal_notices: str = "exchange.portal-notices"
    portal_webhooks: str = "exchange.portal-webhooks"
    #: 数据质量异议: consumers' objections and each step of them (compacted, JSON).
    objections: str = "exchange.objections"
    #: The quality worker's latest measures and score per entry (compacted, JSON) ...
    quality_measures: str = "exchange.quality-measures"
    #: ... and every score it took, the history (kept forever, like the audit trail).
    quality_scores: str = "exchange.quality-scores"
    source_prefix: str = "src."
    delivery_prefix: str = "dlv."
    #: 1 for the single local broker; 3 in production.
    replication_factor: int = Field(1, ge=1)
    #: How long rejected records are kept on the DLQ, in days.
    dlq_retention_days: int = Field(30, ge=1)

    def connector_offsets_of(self, department: str) -> str:
        """Where a department's connectors save their source positions: one topic per
        department, so ACLs keep each to its own (ACLs cannot restrict a record key)."""
        return f"{self.connector_offsets}.{department}"

    def delivery_of(self, consumer: str, entry: str, grant_id: str, generation: str) -> str:
        """A grant generation's delivery topic: ``<prefix><consumer>.<entry>.<grant>.<gen>``.
        One per grant and terms, so a grant that ends or changes what it lets through leaves
        nothing behind once its topic is deleted, whatever the consumer's other grants."""
        return f"{self.deliveries_of(consumer, entry)}{grant_id}.{generation}"

    def deliveries_of(self, consumer: str, entry: str) -> str:
        """The prefix of every delivery topic of ``consumer`` on ``entry``."""
        return f"{self.delivery_prefix}{consumer}.{entry}."

    def delivery_parts(self, topic: str) -> tuple[str, str, str, str] | None:
        """``(consumer, entry, grant id, generation)`` of a delivery topic, or ``None`` for
        a topic not named by :meth:`delivery_of` (department, grant and entry-name ids hold no
        dots, so the five parts are unambiguous)."""
        if not topic.startswith(self.delivery_prefix):
            return None
        parts = topic[len(self.delivery_prefix) :].split(".")
        if len(parts) != 5 or not all(parts):
            return None
        consumer, provider, name, grant_id, generation = parts
        return consumer, f"{provider}.{name}", grant_id, generation

    def router_state_of(self, entry: str) -> str:
        """The changelog of the router's per-key state of one entry's source partitions."""
        return f"{self.router_state}.{entry}"


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
    #: This principal's Ed25519 private key (PEM): it signs every event this process writes,
    #: so a verifier knows which principal wrote it. Its public key must be registered
    #: (`exchange audit keys add`); once a principal has a key, its unsigned events are forged.
    signing_key_file: Path | None = None
    #: Which principal may write which chains: chain-id prefix -> principal (``{dept}``: the
    #: rest of the chain id). Checked by `audit verify` once keys are registered.
    writers: dict[str, str] = Field(
        default_factory=lambda: {
            "router.": "router",
            "portal.": "portal",
            "quality.": "quality",
            "grants.": "operator",
            "security.": "operator",
        }
    )

    @field_validator("key_file", "signing_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # An empty EXCHANGE_AUDIT__SIGNING_KEY_FILE= clears a key inherited from the shell.
        return None if value == "" else value


class RouterSettings(_Section):
    #: Consumer group of the router workers; workers of one group share the source partitions.
    group_id: str = "exchange-router"
    #: Route with per-key state (``routing/state.py``): a grant receives a create when a key
    #: enters its scope, a delete when it leaves or a key it held is deleted, and nothing when
    #: what it sees did not change. Off only to measure what the state costs (the benchmark's
    #: stateless baseline): then every change passing a filter is delivered as the source
    #: says, and a key that leaves a grant's scope stays with its consumer.
    key_state: bool = True
    #: The secret the grants' salts are derived from (``routing/salts.py``): made on a first
    #: start; every router worker must use the same file, and nobody else may read it.
    salt_secret_file: Path = Path("router-salt.key")
    metrics_port: int = Field(9310, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    #: Most source records read and routed together. Under load batches are this full: 2,000
    #: routed 15% more per second than 500 (fewer per-batch steps); under light load a batch
    #: holds what came within batch_wait_s.
    batch_size: int = Field(2000, ge=1)
    #: Longest wait for a batch to fill: under load batches fill at once, under light load a
    #: record waits at most this long before it is routed.
    batch_wait_s: float = Field(0.005, gt=0)
    #: Checkpoints (one Kafka transaction each: deliveries, receipts, DLQ, progress, offsets)
    #: come once the transaction is this old and nothing waits to be routed...
    checkpoint_min_s: float = Field(0.01, ge=0)
    #: ...or while records wait, once it is this old or holds this many deliveries.
    checkpoint_max_s: float = Field(0.5, gt=0)
    checkpoint_max_deliveries: int = Field(50_000, ge=1)
    #: Deliveries held in memory at most twice this: routed and not yet handed to the producer,
    #: and in the producer's queue (its ``queue.buffering.max.messages``). Routing ahead of a
    #: broker that is slower than the router only costs memory: with 10,000 grants 8 batches
    #: routed ahead were 160,000 deliveries (73 MB of the worker's heap peak) and the
    #: producer's default queue of 100,000 another 41 MB (heaptrack, 2026-12-06). 20,000 rather
    #: than 50,000: the 10,000-grant worker's peak went 312 -> 285 MB and its rate did not drop
    #: (343 -> 397 records/s); 3 grants still route 3 batches ahead, and the throughput
    #: benchmark kept its ratios (1.64 and 1.05; docs/benchmarks.md).
    in_flight_deliveries: int = Field(20_000, ge=1000)
    #: How long the router's producer waits to fill a request (``linger.ms``). A checkpoint
    #: waits until every delivery is acknowledged, so under light load this adds to every
    #: record's latency; under load requests fill while others are in flight anyway. 1 ms
    #: rather than 5: latency p99 60 -> 49 ms at 2,000 records/s, throughput unchanged
    #: (docs/benchmarks.md).
    linger_ms: int = Field(1, ge=0, le=1000)
    #: The largest delivery (key, value and headers) the router writes; a delivery over it goes
    #: to the DLQ (``delivery_too_large``) with an audit event, and the record's other grants
    #: and everything after it are routed as usual. The router's producer and the delivery
    #: topics it creates take this much plus framing. The default fits the broker's default
    #: message size (1,048,588 bytes); raising it past that needs the existing delivery topics'
    #: ``max.message.bytes`` raised too (only new ones are created with it).
    max_delivery_bytes: int = Field(1_000_000, ge=1024, le=100_000_000)
    #: How often grants are checked for expiry and changes, even when no record arrives.
    grant_check_interval_s: float = Field(1.0, gt=0)
    #: The router stops (and says why) when its grant book has not followed the grants topic
    #: for this long: its reader recovers from failures by itself (waits of 1, 2, 4 ... s),
    #: but a revocation must not go unheeded for longer than this.
    grant_book_stale_s: float = Field(60.0, ge=5)
    #: A grant generation that ended or changed (``routing/reaper.py``) has its delivery topic
    #: deleted once it stayed unwanted this long: longer than a worker takes to hear of the
    #: change and commit what it routed before, short enough that nothing is left 30 s on.
    ended_topic_grace_s: float = Field(10.0, ge=1, le=25)
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


class PortalSettings(_Section):
    """``exchange portal``: the departments' API and web portal (``exchange/portal/``)."""

    host: str = "127.0.0.1"
    port: int = Field(8600, ge=0, le=65535)
    #: A session ends this long after login, whatever its use ...
    session_max_s: float = Field(8 * 3600, gt=0)
    #: ... and after this long unused.
    session_idle_s: float = Field(30 * 60, gt=0)
    #: Failed logins of one account within ``lockout_window_s`` that lock it ...
    login_max_failures: int = Field(5, ge=1)
    lockout_window_s: float = Field(15 * 60, gt=0)
    #: ... for this long.
    lockout_s: float = Field(15 * 60, gt=0)
    #: Failed logins from one address per minute, per replica (successful ones are free: a
    #: department's whole office may share one address).
    login_failures_per_ip_per_minute: int = Field(30, ge=1)
    #: The longest an API token may live.
    token_max_days: int = Field(365, ge=1)
    #: Cookies only over HTTPS (``Secure``). Browsers treat http://localhost as secure too.
    secure_cookies: bool = True
    #: How often a replica looks for grants ending within 7 days, or ended (their notices).
    notice_check_s: float = Field(60.0, gt=0)
    #: A webhook POST is tried this many times (waiting 1, 2, 4 ... s between), each waiting
    #: at most ``webhook_timeout_s`` for the answer.
    webhook_attempts: int = Field(5, ge=1, le=10)
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)


def _default_deadlines() -> dict[str, str]:
    return {
        "filed": "5 working days",
        "investigating": "5 working days",
        "accepted": "10 working days",
        "rejected": "5 working days",
        "fixed": "5 working days",
    }


class QualitySettings(_Section):
    """Data quality: objections' deadlines and the quality worker (``exchange quality run``)."""

    #: Per objection state, how long its step may take before the operators are told
    #: ('5 working days', '2 days', '8 hours', '30 seconds'); a state not named has none.
    deadlines: dict[str, str] = Field(default_factory=_default_deadlines)
    #: Public holidays (法定节假日) and weekend days that are working days (调休), for
    #: working-day deadlines; judged at UTC+``utc_offset_hours``.
    holidays: tuple[dt.date, ...] = ()
    workdays: tuple[dt.date, ...] = ()
    utc_offset_hours: float = Field(8.0, ge=-12, le=14)
    metrics_port: int = Field(9330, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    #: How often measures are published and deadlines looked at.
    interval_s: float = Field(15.0, gt=0)
    #: An entry is late when its last change is older than its update cycle times this.
    late_factor: float = Field(1.5, ge=1)
    #: The worker's CPU priority (``nice``): measures are background work and must not slow
    #: the router on a shared host.
    nice: int = Field(19, ge=0, le=19)
    #: The worker waits while the router is this many source records behind and moving
    #: (0: never waits) ...
    yield_to_router_records: int = Field(1000, ge=0)
    #: ... but for at most this long at once.
    max_yield_s: float = Field(300.0, gt=0)
    #: Objections not yet confirmed one grant may have at once: a consumer cannot flood its
    #: provider's inbox.
    max_open_per_grant: int = Field(200, ge=1)
    #: Times an objection may be reopened; then the consumer asks the operators instead (each
    #: round is another pass over the entry's source topic).
    max_rounds: int = Field(5, ge=1)
    #: Source topics read from their start per round to locate new objections.
    locate_entries_per_round: int = Field(2, ge=1)
    #: How many mismatching values of a cross-entry check are kept as samples.
    check_samples: int = Field(20, ge=0, le=1000)
    #: The score's parts and their weights (``docs/quality.md``): completeness, validity,
    #: timeliness, objections, consistency.
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "completeness": 30.0,
            "validity": 30.0,
            "timeliness": 20.0,
            "objections": 10.0,
            "consistency": 10.0,
        }
    )
    #: A score per entry is added to the history (``topics.quality_scores``) this often.
    score_every_s: float = Field(3600.0, gt=0)

    @field_validator("deadlines")
    @classmethod
    def _deadlines(cls, value: dict[str, str]) -> dict[str, str]:
        states = ("filed", "investigating", "accepted", "rejected", "fixed")
        for state, text in value.items():
            if state not in states:
                raise ValueError(f"{state!r} is not a state with a deadline ({', '.join(states)})")
            parse_deadline(text)
        return value


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
    portal: PortalSettings = Field(default_factory=PortalSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    dev: DevPlatformSettings = Field(default_factory=DevPlatformSettings)
    #: The folder relative paths are resolved against (the config file's folder).
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _resolve_secret_paths(self) -> ExchangeSettings:
        # Clients read these files long after loading, from whatever working directory: make
        # them absolute now, relative to the config file like every other path. The sections
        # are frozen, hence the replacement through object.__setattr__.
        sec = self.kafka.security
        kafka_sec = sec.model_copy(
            update={
                "password_file": self._abs(sec.password_file),
                "ca_file": self._abs(sec.ca_file),
            }
        )
        registry = self.registry.model_copy(
            update={
                "password_file": self._abs(self.registry.password_file),
                "ca_file": self._abs(self.registry.ca_file),
                "cert_file": self._abs(self.registry.cert_file),
                "key_file": self._abs(self.registry.key_file),
            }
        )
        object.__setattr__(self, "kafka", self.kafka.model_copy(update={"security": kafka_sec}))
        object.__setattr__(self, "registry", registry)
        return self

    def _abs(self, path: Path | None) -> Path | None:
        return None if path is None else self.resolve(path)

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


def read_secret(path: Path, field: str) -> str:
    """A secret's value: the file's content without the trailing newline."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problem = Problem(path, field, f"cannot read the secret: {exc.strerror}")
        raise ConfigError([problem]) from exc
    if not value:
        raise ConfigError([Problem(path, field, "the secret file is empty")])
    return value
