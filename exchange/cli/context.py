"""What every command needs: the settings, loaded once from ``--config``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import typer

from exchange.config import ExchangeSettings, load_settings


@dataclass
class CliState:
    config: Path | None = None
    _settings: ExchangeSettings | None = field(default=None, repr=False)

    @property
    def settings(self) -> ExchangeSettings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def configure_logging(log_level: str) -> str:
    """Log lines with time, level and logger at ``--log-level``; returns the level's name."""
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("use debug, info, warning or error", param_hint="--log-level")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return level
