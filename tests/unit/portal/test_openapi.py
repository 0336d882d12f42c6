"""The API's OpenAPI document is checked in (docs/openapi.json) and matches the code."""

from __future__ import annotations

from exchange.portal.openapi import render
from tests.conftest import ROOT


def test_the_checked_in_openapi_document_is_the_apis() -> None:
    checked_in = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert render() == checked_in, (
        "the API changed: regenerate docs/openapi.json with "
        "`.venv/bin/python -m exchange.portal.openapi docs/openapi.json` and review the diff"
    )


def test_every_route_is_versioned_and_documented() -> None:
    import json

    doc = json.loads(render())
    assert doc["openapi"].startswith("3.")
    assert all(path.startswith("/api/v1/") for path in doc["paths"])
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
