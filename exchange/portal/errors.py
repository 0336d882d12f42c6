"""The portal's errors: each carries the HTTP status it answers with and a stable code.

Every refusal says why in words a department's staff can act on; the API answers
``{"error": {"code": ..., "message": ...}}`` with the status (``api.py``).
"""

from __future__ import annotations

from exchange.errors import ExchangeError

__all__ = [
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "PortalError",
    "TooManyAttemptsError",
    "UnauthenticatedError",
]


class PortalError(ExchangeError):
    """Root of the portal's refusals."""

    status = 500


class BadRequestError(PortalError):
    """The request itself is wrong (a field, a missing reason)."""

    status = 422


class UnauthenticatedError(PortalError):
    """No valid session or token: log in (again)."""

    status = 401


class ForbiddenError(PortalError):
    """Authenticated, but this principal may not do this (its department or its roles)."""

    status = 403


class NotFoundError(PortalError):
    """Nothing of that id that this principal may see (a department never learns whether
    another department's grant exists)."""

    status = 404


class ConflictError(PortalError):
    """The thing exists already, or is not in a state that allows this."""

    status = 409


class TooManyAttemptsError(PortalError):
    """Login attempts over the limit: wait."""

    status = 429
