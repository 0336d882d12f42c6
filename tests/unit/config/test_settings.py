from pathlib import Path

import pytest

from exchange.config import ConfigError, load_settings
from exchange.config.yamlfile import parse_yaml


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "exchange.yaml"
    cfg.parent.mkdir()
    cfg.write_text("kafka:\n  bootstrap_servers: broker:9092\n")
    s = load_settings(cfg)
    assert s.kafka.bootstrap_servers == "broker:9092"
    assert s.catalog_dir == (tmp_path / "conf" / "catalog").resolve()
    assert s.schemas_dir == (tmp_path / "schemas" / "avro").resolve()
    assert s.kafka.client_config(**{"acks": "all"})["bootstrap.servers"] == "broker:9092"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "exchange.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: broker:9092\nregistry:\n  timeout_s: 3\n")
    monkeypatch.setenv("EXCHANGE_KAFKA__BOOTSTRAP_SERVERS", "other:9093")
    s = load_settings(cfg)
    assert s.kafka.bootstrap_servers == "other:9093"
    assert s.registry.timeout_s == 3  # untouched fields keep the file's values


def test_errors_name_file_field_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "exchange.yaml"
    cfg.write_text(
        "kafka:\n  bootstrap_servers: b:9092\n  request_timeout_s: -1\n"
        "registry:\n  url: ftp://x\n  colour: red\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    found = {(p.path, p.line): p.message for p in info.value.problems}
    assert "greater than 0" in found[("kafka.request_timeout_s", 3)]
    assert "http:// or https://" in found[("registry.url", 5)]
    assert found[("registry.colour", 6)] == "unknown field"
    assert all(p.file == cfg for p in info.value.problems)


def test_bad_env_value_is_attributed_to_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "exchange.yaml"
    cfg.write_text("dev:\n  kafka_port: 9092\n")
    monkeypatch.setenv("EXCHANGE_DEV__KAFKA_PORT", "99999")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    (p,) = info.value.problems
    assert p.path == "dev.kafka_port" and "(from $EXCHANGE_DEV__KAFKA_PORT)" in p.message


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yaml")
    assert info.value.problems[0].message == "file not found"


def test_yaml_positions_and_duplicates(tmp_path: Path) -> None:
    doc = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - y: 2\n", tmp_path / "f.yaml")
    assert doc.lines[("a", "b")] == 2
    assert doc.lines[("a", "c", 1, "y")] == 5
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\nb: 2\na: 3\n", tmp_path / "f.yaml")
    (p,) = info.value.problems
    assert (p.path, p.line, p.message) == ("a", 3, "duplicate key (first at line 1)")


def test_invalid_yaml_has_a_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", tmp_path / "f.yaml")
    (p,) = info.value.problems
    assert p.path == "(yaml)" and p.line == 3
