"""Factory fixtures for objections (quixstreams' style: a function that makes one)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from exchange.quality.objections import Objection, Step

_T0 = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def make_objection() -> Callable[..., Objection]:
    def make(**changes: Any) -> Objection:
        values: dict[str, Any] = {
            "id": "obj-1",
            "grant_id": "g-1",
            "entry": "gongan.population",
            "provider": "gongan",
            "consumer": "mzj",
            "key": "140602198001010011",
            "fields": ("name",),
            "problem": "姓名与户籍登记不符",
            "history": (Step(state="filed", at=_T0, by="mzj/wang"),),
            "due_at": _T0 + dt.timedelta(days=7),
        }
        values.update(changes)
        return Objection(**values)

    return make
