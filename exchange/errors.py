"""The one exception root of the project.

Every package raises a subclass of :class:`ExchangeError`; library errors are wrapped with
``raise ... from`` so the original (and its code, where it has one) is kept.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Root of every error this project raises on purpose."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: A stable machine-readable code (e.g. a librdkafka error name or an HTTP status).
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]" if self.code else self.message
