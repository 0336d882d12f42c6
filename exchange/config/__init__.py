"""Typed configuration: YAML with positions, env overrides, problems naming file and field."""

from exchange.config.problems import ConfigError, Problem, format_loc
from exchange.config.settings import ExchangeSettings, load_settings
from exchange.config.yamlfile import YamlDocument, load_yaml

__all__ = [
    "ConfigError",
    "ExchangeSettings",
    "Problem",
    "YamlDocument",
    "format_loc",
    "load_settings",
    "load_yaml",
]
