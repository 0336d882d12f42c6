"""The departments' portal: an authenticated API (and web pages) through which departments
apply for data, decide requests on their own entries, end their grants and manage their own
people and system tokens (issue 22).

Layout: ``model.py`` (what is kept), ``secrets.py`` (hashes), ``policy.py`` and ``limits.py``
(pure rules), ``state.py`` (the followed topics), ``service.py`` (actions, audited),
``api.py`` and ``app.py`` (HTTP). ``docs/portal.md`` is the user's and operator's guide.
"""

from exchange.portal.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PortalError,
    TooManyAttemptsError,
    UnauthenticatedError,
)
from exchange.portal.model import Account, ApiToken, Principal, Role
from exchange.portal.service import Portal

__all__ = [
    "Account",
    "ApiToken",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "Portal",
    "PortalError",
    "Principal",
    "Role",
    "TooManyAttemptsError",
    "UnauthenticatedError",
]
