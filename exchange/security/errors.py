from __future__ import annotations

from exchange.errors import ExchangeError


class SecurityError(ExchangeError):
    """A credential or ACL operation cannot be done as asked."""
