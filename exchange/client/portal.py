"""A department system's calls to the portal's API with its token (``exk_...``): what the
consumer SDK needs to object to records it received (数据质量异议, ``docs/quality.md``).

Standard library only (urllib): a department's consumer carries no web client of ours.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from exchange.errors import ExchangeError

__all__ = ["PortalCallError", "PortalClient"]


class PortalCallError(ExchangeError):
    """The portal refused a call (``code`` is its error code, ``status`` the HTTP status) or
    could not be reached (``code`` ``UNREACHABLE``)."""

    def __init__(self, message: str, *, code: str | None, status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class PortalClient:
    """The portal at ``url`` (``https://portal.example/``), called with ``token``."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise PortalCallError(f"portal url {url!r}: http:// or https://", code="BAD_URL")
        self.url = url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    def file_objection(
        self,
        grant_id: str,
        key: str,
        fields: list[str],
        problem: str,
        evidence: str = "",
        event: str | None = None,
    ) -> dict[str, Any]:
        """The objection as filed (its ``id`` and ``state``)."""
        body = {
            "grant_id": grant_id,
            "key": key,
            "fields": fields,
            "problem": problem,
            "evidence": evidence,
            "event": event,
        }
        filed: dict[str, Any] = self.call("POST", "/api/v1/objections", body)
        return filed

    def objection(self, objection_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", f"/api/v1/objections/{objection_id}")
        return found

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _refusal(method, path, exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PortalCallError(
                f"cannot reach the portal at {self.url}: {exc}", code="UNREACHABLE"
            ) from exc


def _refusal(method: str, path: str, exc: urllib.error.HTTPError) -> PortalCallError:
    try:
        error = json.loads(exc.read())["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"HTTP_{exc.code}", exc.reason
    return PortalCallError(f"{method} {path}: {message}", code=code, status=exc.code)
