"""Shared fixtures: a throwaway copy of the project's config and schemas."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.config import ExchangeSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent


class Project:
    """A copy of ``config/`` and ``schemas/`` that a test may break on purpose."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "config"
        self.schemas = root / "schemas" / "avro"

    @property
    def exchange_yaml(self) -> Path:
        return self.config / "exchange.yaml"

    def settings(self) -> ExchangeSettings:
        return load_settings(self.exchange_yaml)

    def edit(self, relative: str, old: str, new: str) -> Path:
        """Replace exactly one occurrence of ``old`` in a file (fails loudly if absent)."""
        path = self.root / relative
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {relative}"
        path.write_text(text.replace(old, new), encoding="utf-8")
        return path

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    yield Project(tmp_path)
