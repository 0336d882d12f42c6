"""Connector configuration: one YAML file per connector in ``config/connectors/``.

Example (a file drop)::

    id: gongan-population-files
    department: gongan
    system: 人口管理系统
    entry: gongan.resident_population
    source:
      type: file
      folder: ../../data/gongan/inbox
      encoding: auto
      mode: snapshot
    fields:
      citizen_id: 公民身份号码
      gender: {column: 性别, values: {男: '1', 女: '2'}}

Relative paths are relative to the connector file's folder. A ``${VAR}`` in an SQL URL is taken
from the environment, so passwords stay out of the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.records import FieldSource
from exchange.config import ConfigError, Problem, load_yaml
from exchange.config.problems import problems_from_validation

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMapping(_Model):
    #: Column (CSV/XLSX header, SQL column) the field is read from.
    column: str
    #: Source codes translated before conversion, e.g. {男: '1', 女: '2'}.
    values: dict[str, str | int | float | bool] | None = None
    #: strptime format, when the automatic date formats do not fit.
    date_format: str | None = None

    def source(self) -> FieldSource:
        return FieldSource(self.column, self.values, self.date_format)


class FileSourceConfig(_Model):
    """A folder the department's system drops CSV or XLSX exports into."""

    type: Literal["file"]
    folder: Path
    patterns: tuple[str, ...] = ("*.csv", "*.xlsx")
    #: ``auto`` reads UTF-8 when the file is valid UTF-8, otherwise GB18030 (a superset of GBK).
    encoding: Literal["auto", "utf-8", "gbk", "gb18030"] = "auto"
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    #: XLSX: the sheet to read (default: the first).
    sheet: str | None = None
    #: Each row of a file is published as a snapshot read (``r``) or as an update (``u``).
    mode: Literal["snapshot", "upsert"] = "upsert"
    #: Each file is a full export: keys of the previous export missing from it become deletes.
    delete_missing: bool = False
    #: The largest share of the previous export's keys one export may delete. An export that
    #: would delete more is taken as cut short or broken: its rows are published, its deletes
    #: are not (the report says so), and the next export is compared with the earlier one.
    delete_limit: float = Field(0.5, gt=0, le=1)
    poll_interval_s: float = Field(5.0, gt=0)
    #: A file changed within this many seconds may still be being written: wait for it.
    settle_s: float = Field(2.0, ge=0)


class SoftDelete(_Model):
    column: str
    #: Values that mean "deleted"; by default any true-like value (1, true, 'Y', '是').
    values: tuple[str | int | bool, ...] | None = None


class SqlSourceConfig(_Model):
    """A database table polled like Kafka Connect's JDBC source."""

    type: Literal["sql"]
    #: SQLAlchemy URL: ``sqlite:///relative/or/absolute.db``, ``postgresql+psycopg://u:${PW}@h/db``.
    url: str
    table: Annotated[str, Field(min_length=1)]
    #: ``incrementing``: new rows by a growing id; ``timestamp``: changed rows by an update time;
    #: both: by update time, ties broken by id (the safest).
    mode: Literal["incrementing", "timestamp", "timestamp+incrementing"]
    id_column: str | None = None
    updated_column: str | None = None
    soft_delete: SoftDelete | None = None
    batch_size: int = Field(1000, ge=1, le=100_000)
    poll_interval_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _columns_for_mode(self) -> SqlSourceConfig:
        if "incrementing" in self.mode and not self.id_column:
            raise ValueError(f"mode {self.mode} needs id_column")
        if "timestamp" in self.mode and not self.updated_column:
            raise ValueError(f"mode {self.mode} needs updated_column")
        return self

    def resolved_url(self, base: Path) -> str:
        """The URL with ``${VAR}`` filled in and a relative SQLite path made absolute."""

        def env(match: re.Match[str]) -> str:
            name = match[1]
            if name not in os.environ:
                raise ValueError(f"environment variable {name} (used in url) is not set")
            return os.environ[name]

        url = _ENV_VAR.sub(env, self.url)
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix:
            path = url[len(prefix) :]
            if not path.startswith(":memory:"):
                url = prefix + str((base / path).resolve())
        return url


class HttpSourceConfig(_Model):
    """An endpoint the department's system POSTs records to."""

    type: Literal["http"]
    host: str = "127.0.0.1"
    #: 0 picks a free port (tests).
    port: int = Field(8480, ge=0, le=65535)
    #: YAML file ``tokens: {department: token}``; only this connector's department is admitted.
    tokens_file: Path
    max_batch: int = Field(1000, ge=1, le=100_000)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    #: A request's X-Request-Time must be within this many seconds of the connector's clock, and
    #: its X-Request-Id unused within it (connectors/sources/replay.py); 0 turns the check off.
    replay_window_s: float = Field(300.0, ge=0, le=86_400)
    #: HTTPS: the server certificate (PEM, with its chain) and its private key; both or neither.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSourceConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both, or neither")
        return self


SourceConfig = Annotated[
    FileSourceConfig | SqlSourceConfig | HttpSourceConfig, Field(discriminator="type")
]


class PublishConfig(_Model):
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    linger_ms: int = Field(20, ge=0, le=10_000)
    #: How often the source position is saved (once every record before it is acknowledged).
    checkpoint_interval_s: float = Field(1.0, gt=0)
    #: File and table sources: the records and the saved position are committed together, one
    #: Kafka transaction per checkpoint, so a restart repeats nothing (``connectors/publisher.py``).
    #: Off: a restart repeats what was published since the last saved position, which the
    #: router's per-key state passes over unless a row changed again meanwhile (measured: 0.3-0.4
    #: s once per run for ``init_transactions``, 6 ms per commit; docs/benchmarks.md). HTTP
    #: pushes are never transactional (a sender is answered per record).
    exactly_once: bool = True
    #: A record Kafka has not acknowledged after this long stops the connector; also the
    #: transaction timeout, which the platform's brokers cap at 300 s
    #: (``transaction.max.timeout.ms``: an open transaction holds back committed readers).
    delivery_timeout_s: float = Field(120.0, gt=0, le=300)
    #: Processes that convert and encode file rows; 0 = all in the connector's own process.
    #: Worth it with cores to spare: on 2 cores shared with a broker it gained nothing (see
    #: docs/benchmarks.md).
    workers: int = Field(0, ge=0, le=32)
    #: Extra librdkafka producer settings.
    producer: dict[str, str | int | float | bool] = Field(default_factory=dict)


class MetricsConfig(_Model):
    #: Port of ``/metrics``; none = no endpoint.
    port: int | None = Field(None, ge=0, le=65535)
    host: str = "0.0.0.0"


class ConnectorConfig(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=100)]
    department: str
    #: The department's source system, for the change records' ``source``.
    system: Annotated[str, Field(min_length=1)]
    entry: str
    source: SourceConfig
    #: Field -> column. HTTP push takes field names as they are, so needs none.
    fields: dict[str, FieldMapping] = Field(default_factory=dict)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: The connector file's folder: relative paths are resolved against it.
    base_dir: Path = Field(Path("."), exclude=True)
    #: The connector file, for errors found after loading it (None when built in code).
    file: Path | None = Field(None, exclude=True)

    @field_validator("fields", mode="before")
    @classmethod
    def _short_form(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: {"column": v} if isinstance(v, str) else v for k, v in raw.items()}
        return raw

    @model_validator(mode="after")
    def _fields_needed(self) -> ConnectorConfig:
        if not isinstance(self.source, HttpSourceConfig) and not self.fields:
            raise ValueError("fields: map the entry's fields to source columns")
        return self

    def where(self, setting: str) -> str:
        """``file: setting``, to start an error about that setting."""
        return f"{self.file}: {setting}" if self.file else setting

    def resolve(self, path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def fields_columns(self) -> list[str]:
        """Source columns the field mapping reads, in order, once each."""
        return list(dict.fromkeys(m.column for m in self.fields.values()))

    def field_sources(self) -> dict[str, FieldSource]:
        return {name: mapping.source() for name, mapping in self.fields.items()}


def load_connector_config(file: Path) -> ConnectorConfig:
    """Read one connector file; every problem names the file, the field path and the line."""
    doc = load_yaml(file)
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(file, "(top level)", "must be a mapping", 1)])
    try:
        return ConnectorConfig.model_validate(
            {**doc.data, "base_dir": file.parent.resolve(), "file": file}
        )
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, file, doc.lines, doc.data)) from exc
