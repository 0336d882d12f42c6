import hashlib
from pathlib import Path
from typing import Any

import pytest

from connectors.config import ConnectorConfig
from connectors.sources.http import HttpPushSource
from exchange.config import ConfigError


def push_source(tmp_path: Path, tokens_file: str = "t.yaml", **extra: Any) -> HttpPushSource:
    """An HTTP push connector of mzj reading its tokens from ``tokens_file``."""
    config = ConnectorConfig.model_validate(
        {
            "id": "c",
            "department": "mzj",
            "system": "s",
            "entry": "mzj.marriage_registration",
            "source": {"type": "http", "tokens_file": tokens_file},
            "base_dir": tmp_path,
            **extra,
        }
    )
    return HttpPushSource(config)


def source(tmp_path: Path, tokens: str) -> HttpPushSource:
    (tmp_path / "t.yaml").write_text(tokens, encoding="utf-8")
    return push_source(tmp_path)


def test_plain_and_hashed_tokens(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"gongan-secret").hexdigest()
    src = source(tmp_path, f"tokens: {{mzj: mzj-secret, gongan: 'sha256:{digest}'}}\n")
    tokens = src.tokens()
    assert src.department_of("Bearer mzj-secret", tokens) == "mzj"
    assert src.department_of("Bearer gongan-secret", tokens) == "gongan"
    assert src.department_of("Bearer wrong", tokens) is None
    assert src.department_of("Basic mzj-secret", tokens) is None
    assert src.department_of(None, tokens) is None


def test_the_connectors_department_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no token for department mzj"):
        source(tmp_path, "tokens: {gongan: x}\n").check()


def test_a_missing_tokens_file_names_the_connector_file_and_setting(tmp_path: Path) -> None:
    src = push_source(tmp_path, "nowhere.yaml", file=tmp_path / "mzj-push.yaml")
    with pytest.raises(ConfigError) as err:
        src.check()
    (problem,) = err.value.problems
    assert problem.file == tmp_path / "mzj-push.yaml"
    assert problem.path == "source.tokens_file"
    assert str(tmp_path / "nowhere.yaml") in problem.message
