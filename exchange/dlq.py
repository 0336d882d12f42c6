"""Dead letters: what was rejected, where it came from and why, on ``exchange.dlq``.

Values are JSON (the DLQ must hold anything, including bytes that are not Avro at all);
``reason`` is a short fixed word (also a header and a metric label), ``errors`` the details.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REASON_HEADER = "exchange.reason"
ORIGIN_HEADER = "exchange.origin"


@dataclass(frozen=True)
class DeadLetter:
    origin: str  # "connector" | "router"
    reason: str
    errors: Sequence[Mapping[str, Any]]
    entry: str | None
    department: str | None
    #: Where the rejected data came from (file and row, table row, topic/partition/offset).
    position: str
    #: The rejected data as read: a row's cells, or raw bytes (base64).
    data: Mapping[str, Any] | bytes | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    ts_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def encode(self) -> bytes:
        if isinstance(self.data, bytes):
            data: Any = {"base64": base64.b64encode(self.data).decode("ascii")}
        else:
            data = {k: _text(v) for k, v in (self.data or {}).items()}
        return json.dumps(
            {
                "origin": self.origin,
                "reason": self.reason,
                "errors": list(self.errors),
                "entry": self.entry,
                "department": self.department,
                "position": self.position,
                "data": data,
                "ts_ms": self.ts_ms,
                **self.extra,
            },
            ensure_ascii=False,
            sort_keys=True,
        ).encode("utf-8", "backslashreplace")  # a lone surrogate: as its JSON escape

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [(REASON_HEADER, self.reason.encode()), (ORIGIN_HEADER, self.origin.encode())]


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
