"""Errors of connectors (under the one root, :class:`exchange.errors.ExchangeError`)."""

from exchange.errors import ExchangeError


class ConnectorError(ExchangeError):
    """A connector cannot start or go on: its message says what to fix."""


class SourceError(ConnectorError):
    """The source cannot be read (unreachable database, unreadable folder, a file that is not
    CSV/XLSX in the configured encoding)."""
