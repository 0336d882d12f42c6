from pathlib import Path

from exchange.security.principals import client_env


def test_client_environment_points_at_files_not_secrets(tmp_path: Path) -> None:
    text = client_env(
        "connector-gongan", "localhost:9092", tmp_path / "p", tmp_path / "ca.pem", "https://r"
    )
    assert f"EXCHANGE_KAFKA__SECURITY__CA_FILE={tmp_path / 'ca.pem'}" in text
    assert f"EXCHANGE_KAFKA__SECURITY__PASSWORD_FILE={tmp_path / 'p'}" in text
    # Without a registry login given, one inherited from the shell is cleared.
    assert "EXCHANGE_REGISTRY__USERNAME=\n" in text
    reader = client_env(
        "consumer-mzj",
        "localhost:9092",
        tmp_path / "p",
        None,
        "https://r",
        registry_login=("registry-reader", tmp_path / "r"),
    )
    assert "EXCHANGE_REGISTRY__USERNAME=registry-reader\n" in reader
    assert f"EXCHANGE_REGISTRY__PASSWORD_FILE={tmp_path / 'r'}\n" in reader
