"""Dead letters: what was rejected, where it came from and why, on ``exchange.dlq``.

Values are JSON (the DLQ must hold anything, including bytes that are not Avro at all);
``reason`` is a short fixed word (also a header and a metric label), ``errors`` the details.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The largest dead letter written whole (Kafka takes 1,000,000-byte messages by default).
MAX_LETTER_BYTES = 256 * 1024
#: Characters of a long text kept in a cut letter.
_CUT_CHARS = 2000
#: The longest record key a dead letter keeps as its own Kafka key; a longer one is named by
#: its SHA-256 (a department's key of a megabyte must not make the letter unwritable).
MAX_KEY_BYTES = 1024
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
        """The letter as JSON. One larger than :data:`MAX_LETTER_BYTES` keeps its reasons and a
        cut copy of the data (``"truncated": true``): it must still fit in a Kafka message, and
        the data is often what made the record too large to publish in the first place."""
        whole = self._json(self._data(None), self.errors, self.extra, truncated=False)
        if len(whole) <= MAX_LETTER_BYTES:
            return whole
        errors = [{k: _cut(v, _CUT_CHARS) for k, v in e.items()} for e in self.errors]
        # Extras too (a key of a megabyte arrives as its base64 here).
        extra = {k: _cut(v, _CUT_CHARS) for k, v in self.extra.items()}
        cut = self._json(self._data(_CUT_CHARS), errors, extra, truncated=True)
        if len(cut) <= MAX_LETTER_BYTES:
            return cut
        omitted = {"omitted": f"{len(whole):,} bytes of JSON"}
        return self._json(omitted, errors, extra, truncated=True)

    def _data(self, cut: int | None) -> Any:
        if isinstance(self.data, bytes):
            kept = self.data if cut is None else self.data[: cut * 3]
            data: dict[str, Any] = {"base64": base64.b64encode(kept).decode("ascii")}
            if len(kept) < len(self.data):
                data["size"] = len(self.data)
            return data
        cells = {k: _text(v) for k, v in (self.data or {}).items()}
        return cells if cut is None else {k: _cut(v, cut) for k, v in cells.items()}

    def _json(
        self,
        data: Any,
        errors: Sequence[Mapping[str, Any]],
        extra: Mapping[str, Any],
        *,
        truncated: bool,
    ) -> bytes:
        letter = {
            "origin": self.origin,
            "reason": self.reason,
            "errors": list(errors),
            "entry": self.entry,
            "department": self.department,
            "position": self.position,
            "data": data,
            "ts_ms": self.ts_ms,
            **extra,
        }
        if truncated:
            letter["truncated"] = True
        # backslashreplace: a lone surrogate is written as its JSON escape.
        return json.dumps(letter, ensure_ascii=False, sort_keys=True).encode(
            "utf-8", "backslashreplace"
        )

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [(REASON_HEADER, self.reason.encode()), (ORIGIN_HEADER, self.origin.encode())]


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _cut(value: Any, chars: int) -> Any:
    if isinstance(value, str) and len(value) > chars:
        return f"{value[:chars]}... [cut: {len(value):,} characters in all]"
    return value


def letter_key(key: bytes | None) -> bytes | None:
    """The dead letter's Kafka key for a record's ``key``: the key itself when short."""
    if key is None or len(key) <= MAX_KEY_BYTES:
        return key
    return b"sha256:" + hashlib.sha256(key).hexdigest().encode("ascii")
