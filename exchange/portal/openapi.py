"""The API's OpenAPI 3 document, as served at ``/api/v1/openapi.json``.

``docs/openapi.json`` is this document checked in: a unit test fails when the API changes
without it, so every change to the API's shape is a deliberate, reviewed diff. Regenerate with
``.venv/bin/python -m exchange.portal.openapi docs/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from exchange.catalog.load import Catalog
from exchange.config.settings import ExchangeSettings
from exchange.portal.app import create_app
from exchange.portal.service import Portal

__all__ = ["document", "render"]


def document() -> dict[str, Any]:
    """The document, from an app that is built but not started (no network)."""
    app = create_app(Portal(ExchangeSettings(), Catalog(), "openapi"))
    found: dict[str, Any] = app.openapi()
    return found


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(render(), encoding="utf-8")
