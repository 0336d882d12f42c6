"""Recognising repeats: the same change delivered again under the same grant.

The router delivers again what it had not committed when it stopped (same event id, same source
position). Within one delivery partition the changes of one source partition under one grant
arrive in source-offset order, so a repeat is exactly a record whose source offset is not above
the highest seen for its (grant, source partition) in that delivery partition. That high mark
is all the state needed; it travels with the consumer's committed offset as commit metadata, so
a restarted consumer (on any host) still recognises repeats. No Kafka here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

#: Kafka's default limit for commit metadata (offset.metadata.max.bytes).
METADATA_LIMIT = 4096


class RepeatFilter:
    """High marks of one delivery partition: ``"<grant>|<source topic>/<partition>"`` -> offset."""

    def __init__(self, marks: Mapping[str, int] | None = None) -> None:
        self.marks: dict[str, int] = dict(marks or {})

    @classmethod
    def from_metadata(cls, metadata: str | None) -> RepeatFilter:
        """Marks from commit metadata; anything unreadable starts afresh (repeats pass then)."""
        if not metadata:
            return cls()
        try:
            data = json.loads(metadata)
        except ValueError:
            return cls()
        marks = data.get("marks") if isinstance(data, dict) else None
        if not isinstance(marks, dict):
            return cls()
        return cls({str(k): v for k, v in marks.items() if isinstance(v, int)})

    def metadata(self) -> str:
        text = json.dumps({"marks": self.marks}, separators=(",", ":"), sort_keys=True)
        if len(text.encode()) > METADATA_LIMIT:
            # Many grants over many source partitions in one delivery partition: keep the
            # highest marks; an evicted one only lets a repeat through after a restart.
            kept = dict(sorted(self.marks.items(), key=lambda kv: -kv[1])[:64])
            text = json.dumps({"marks": kept}, separators=(",", ":"), sort_keys=True)
        return text

    def is_repeat(self, grant_id: str | None, source: str | None) -> bool:
        """Whether this delivery was handled already.

        ``source`` is the router's ``topic/partition/offset`` header. Records without grant or
        source (not written by the router) are never called repeats.
        """
        parsed = _parse(grant_id, source)
        return parsed is not None and parsed[1] <= self.marks.get(parsed[0], -1)

    def handled(self, grant_id: str | None, source: str | None) -> None:
        """The delivery was handled: later copies of it are repeats."""
        parsed = _parse(grant_id, source)
        if parsed is not None and parsed[1] > self.marks.get(parsed[0], -1):
            self.marks[parsed[0]] = parsed[1]


def _parse(grant_id: str | None, source: str | None) -> tuple[str, int] | None:
    if not grant_id or not source:
        return None
    where, _, offset_text = source.rpartition("/")
    try:
        return f"{grant_id}|{where}", int(offset_text)
    except ValueError:
        return None
