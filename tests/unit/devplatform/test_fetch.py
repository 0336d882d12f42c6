import shutil
from pathlib import Path

import pytest

from exchange.devplatform.fetch import FetchError, fetch_kafka, require_tool


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FetchError) as info:
        require_tool("mvn", "fetch Kafka")
    assert info.value.code == "MISSING_TOOL"
    assert "mvn is not installed (needed to fetch Kafka)" in str(info.value)
    assert "apt-get install maven" in str(info.value)


@pytest.mark.skipif(shutil.which("mvn") is None, reason="needs Maven")
def test_failed_fetch_says_what_and_leaves_no_half_cache(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        fetch_kafka(tmp_path, "0.0.0-does-not-exist", "2.24.3")
    assert info.value.code == "FETCH_FAILED"
    assert "Apache Kafka 0.0.0-does-not-exist" in str(info.value)
    assert not (tmp_path / "kafka-0.0.0-does-not-exist" / ".complete").exists()
