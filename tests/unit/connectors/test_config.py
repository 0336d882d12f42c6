from pathlib import Path

import pytest

from connectors.config import HttpSourceConfig, SqlSourceConfig, load_connector_config
from exchange.config import ConfigError
from tests.conftest import ROOT

GOOD = """id: c1
department: gongan
system: 人口系统
entry: gongan.resident_population
source: {type: file, folder: inbox}
fields:
  citizen_id: 身份证号
  gender: {column: 性别, values: {男: '1'}}
"""


def test_the_sample_connectors_load() -> None:
    files = sorted((ROOT / "config/connectors").glob("*.yaml"))
    configs = [load_connector_config(f) for f in files if f.name != "http-tokens.yaml"]
    assert {c.source.type for c in configs} == {"file", "sql", "http"}


def test_short_and_long_field_forms_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD, encoding="utf-8")
    config = load_connector_config(path)
    assert config.fields["citizen_id"].column == "身份证号"
    assert config.fields["gender"].values == {"男": "1"}
    assert config.resolve(Path("inbox")) == tmp_path / "inbox"


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ("source: {type: file, folder: inbox}", "source", "tag 'ftp'"),
        ("id: c1", "id", "should match pattern"),
        ("  gender: {column: 性别, values: {男: '1'}}", "fields.gender.colum", "unknown field"),
    ],
)
def test_problems_name_the_file_line_and_field(
    tmp_path: Path, change: str, path: str, message: str
) -> None:
    replacement = {
        "source": "source: {type: ftp, folder: inbox}",
        "id": "id: C 1",
        "fields.gender.colum": "  gender: {colum: 性别}",
    }[path]
    file = tmp_path / "c.yaml"
    file.write_text(GOOD.replace(change, replacement), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_connector_config(file)
    problem = next(p for p in caught.value.problems if message in p.message)
    assert problem.file == file and problem.path.startswith(path)
    assert problem.line is not None


def test_sql_modes_need_their_columns() -> None:
    with pytest.raises(ValueError, match="needs updated_column"):
        SqlSourceConfig(type="sql", url="sqlite:///x.db", table="t", mode="timestamp")


def test_sql_url_takes_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = SqlSourceConfig(
        type="sql",
        url="postgresql+psycopg://u:${PW}@db/x",
        table="t",
        mode="incrementing",
        id_column="id",
    )
    with pytest.raises(ValueError, match="PW"):
        source.resolved_url(tmp_path)
    monkeypatch.setenv("PW", "s3cret")
    assert source.resolved_url(tmp_path) == "postgresql+psycopg://u:s3cret@db/x"
    relative = source.model_copy(update={"url": "sqlite:///data/x.db"})
    assert relative.resolved_url(tmp_path) == f"sqlite:///{tmp_path}/data/x.db"


def test_file_sources_need_a_mapping_http_does_not(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(GOOD.split("fields:")[0], encoding="utf-8")
    with pytest.raises(ConfigError, match="map the entry's fields"):
        load_connector_config(file)
    file.write_text(
        GOOD.split("source:")[0] + "source: {type: http, tokens_file: t.yaml}\n", encoding="utf-8"
    )
    assert isinstance(load_connector_config(file).source, HttpSourceConfig)


def test_a_database_without_its_driver_is_named(tmp_path: Path) -> None:
    from connectors.errors import SourceError
    from connectors.sources.sql import SqlPollingSource

    path = tmp_path / "c.yaml"
    path.write_text(
        GOOD.replace(
            "source: {type: file, folder: inbox}",
            "source: {type: sql, url: 'mysql://u@db/x', table: t, mode: incrementing, "
            "id_column: id}",
        ),
        encoding="utf-8",
    )
    with pytest.raises(SourceError, match=r"c.yaml: source.url: no driver for this database"):
        SqlPollingSource(load_connector_config(path))
