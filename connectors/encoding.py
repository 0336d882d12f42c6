"""Rows to encoded change records: the CPU-bound part of publishing, as plain functions.

It runs in the connector's own process or in worker processes (``publish.workers``), which get
an :class:`EncoderSpec` once and then batches of rows. Only encoded bytes come back; the producer,
its acknowledgements and the saved position stay in the connector's process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from connectors.records import FieldSource, Identity, Op, RowError, RowMapper, event_id, source_of
from exchange.catalog.keys import record_key
from exchange.catalog.model import CatalogEntry
from exchange.kafka.envelope import EnvelopeEncoder

#: A source row: its cells by column, or why it could not be split into cells.
Row = dict[str, Any] | str


def map_row(mapper: RowMapper, row: Row) -> tuple[dict[str, Any] | None, list[RowError]]:
    """The entry's record of a source row, or why not (a row that could not even be split into
    cells is ``malformed``)."""
    if isinstance(row, str):
        return None, [RowError(None, "malformed", row)]
    return mapper.to_record(row)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to map and encode rows; picklable, sent once to each worker."""

    entry: CatalogEntry
    record_schema: dict[str, Any]
    sources: dict[str, FieldSource]
    schema_id: int
    schema: dict[str, Any]
    identity: Identity


class ChangeEncoder:
    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self.entry = spec.entry
        self.mapper = RowMapper(spec.entry, spec.record_schema, spec.sources)
        self.envelope = EnvelopeEncoder(spec.schema_id, spec.schema)

    def encode(
        self,
        op: Op,
        key: str,
        record: dict[str, Any] | None,
        position: str,
        identity: str,
        ts_ms: int,
    ) -> tuple[bytes, str]:
        """The change record's bytes and its event id (``record`` is ignored for a delete)."""
        envelope = self.envelope
        after = None if op == "d" or record is None else envelope.encode_after(record)
        eid = event_id(self.entry.id, op, key, identity, after)
        fields = {
            "op": op,
            "source": source_of(self.spec.identity, position),
            "ts_ms": ts_ms,
            "event_id": eid,
        }
        return envelope.encode(fields, after), eid

    def map_row(self, row: Row) -> tuple[dict[str, Any] | None, list[RowError]]:
        return map_row(self.mapper, row)

    def key_of_rejected(self, row: Row) -> str | None:
        """The key of a rejected row, when at least its key fields are readable."""
        if isinstance(row, str):
            return None
        record, errors = self.mapper.key_record(row)
        return record_key(self.entry, record) if record and not errors else None


@dataclass(frozen=True)
class FileBatch:
    """Consecutive rows of one file; rows up to ``resume`` were published before."""

    name: str
    digest: str
    op: Op
    resume: int
    rows: list[tuple[int, Row]]


class RowResult(NamedTuple):
    """What became of one row (a NamedTuple: one per row, so it must be cheap to make)."""

    number: int
    #: The row's key (None for a rejected row whose key fields are unreadable too).
    key: str | None
    #: The encoded change record; None for a rejected row or one published before.
    value: bytes | None = None
    errors: list[RowError] | None = None
    #: The row's cells, for the dead letter of a rejected row.
    row: dict[str, Any] | None = None


def encode_file_batch(encoder: ChangeEncoder, batch: FileBatch) -> list[RowResult]:
    out = []
    ts_ms = int(time.time() * 1000)
    name, digest, op, resume = batch.name, batch.digest, batch.op, batch.resume
    entry = encoder.entry
    for number, row in batch.rows:
        record, errors = encoder.map_row(row)
        if errors:
            cells = row if isinstance(row, dict) else None
            out.append(RowResult(number, encoder.key_of_rejected(row), None, errors, cells))
            continue
        assert record is not None
        key = record_key(entry, record)
        if number <= resume:
            out.append(RowResult(number, key))
            continue
        value, _event_id = encoder.encode(
            op, key, record, f"{name}#{number}", f"{digest}:{number}", ts_ms
        )
        out.append(RowResult(number, key, value))
    return out


# -- worker processes ---------------------------------------------------------------------------

_WORKER: ChangeEncoder | None = None


def init_worker(spec: EncoderSpec) -> None:
    global _WORKER
    _WORKER = ChangeEncoder(spec)


def work(batch: FileBatch) -> list[RowResult]:
    assert _WORKER is not None, "init_worker was not run in this process"
    return encode_file_batch(_WORKER, batch)
