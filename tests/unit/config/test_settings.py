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


def test_secure_kafka_and_registry_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "exchange.yaml"
    cfg.parent.mkdir()
    (tmp_path / "conf" / "secret").write_text("s3cret\n")
    cfg.write_text(
        "kafka:\n"
        "  security: {protocol: SASL_SSL, username: router, password_file: secret,"
        " ca_file: ca.pem}\n"
        "registry:\n"
        "  url: https://reg:8081/apis/ccompat/v7\n"
        "  username: router\n"
        "  password_file: secret\n"
        "  ca_file: ca.pem\n"
    )
    s = load_settings(cfg)
    conf = s.kafka.client_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("router", "s3cret")
    # Relative to the config file, not to the working directory.
    assert conf["ssl.ca.location"] == str((tmp_path / "conf" / "ca.pem").resolve())
    assert s.registry.basic_auth() == "router:s3cret"
    assert str(s.registry.ca_file) == conf["ssl.ca.location"]


def test_plaintext_clients_carry_no_credentials(tmp_path: Path) -> None:
    cfg = tmp_path / "exchange.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: b:9092\n")
    s = load_settings(cfg)
    assert not any(k.startswith(("sasl.", "security.")) for k in s.kafka.client_config())
    assert s.registry.basic_auth() is None


def test_sasl_needs_a_user_and_a_password_file(tmp_path: Path) -> None:
    cfg = tmp_path / "exchange.yaml"
    cfg.write_text("kafka:\n  security:\n    protocol: SASL_SSL\n    username: x\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "kafka.security" in str(err.value)
    assert "password_file" in str(err.value)


def test_a_missing_secret_file_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "exchange.yaml"
    cfg.write_text(
        "kafka:\n  security: {protocol: SASL_SSL, username: x, password_file: nowhere}\n"
    )
    s = load_settings(cfg)
    with pytest.raises(ConfigError) as err:
        s.kafka.client_config()
    assert "kafka.security.password_file" in str(err.value)
    assert "nowhere" in str(err.value)


def test_an_empty_registry_login_in_the_environment_clears_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "exchange.yaml"
    (tmp_path / "secret").write_text("x")
    cfg.write_text("registry:\n  username: operator\n  password_file: secret\n")
    monkeypatch.setenv("EXCHANGE_REGISTRY__USERNAME", "")
    monkeypatch.setenv("EXCHANGE_REGISTRY__PASSWORD_FILE", "")
    s = load_settings(cfg)
    assert s.registry.username is None and s.registry.password_file is None
    assert s.registry.basic_auth() is None
