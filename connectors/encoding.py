"""Rows to encoded change records: the CPU-bound part of publishing, as plain functions.

It runs in the connector's own process or in worker processes (``publish.workers``), which get
an :class:`EncoderSpec` once and then batches of rows. Only encoded bytes come back; the producer,
its acknowledgements and the saved position stay in the connector's process.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from connectors.records import (
    FieldSource,
    Identity,
    Op,
    RowError,
    RowMapper,
    event_ids,
    source_of,
)
from exchange.catalog.keys import record_key, record_keys
from exchange.catalog.model import CatalogEntry
from exchange.kafka.columns import ColumnValueError, RecordColumnsEncoder
from exchange.kafka.envelope import EnvelopeEncoder

#: A source row: its cells in the order of :attr:`RowMapper.columns`, or why it could not be
#: split into cells.
Row = tuple[Any, ...] | str


def map_row(mapper: RowMapper, row: Row) -> tuple[dict[str, Any] | None, list[RowError]]:
    """The entry's record of one source row, or why not (a row that could not even be split into
    cells is ``malformed``)."""
    if isinstance(row, str):
        return None, [RowError(None, "malformed", row)]
    batch = mapper.map_batch([row])
    errors = batch.errors.get(0)
    return (None, errors) if errors else (batch.record(0), [])


#: librdkafka's default message.max.bytes.
MESSAGE_MAX_BYTES = 1_000_000
#: ColumnValueError code of a change record larger than Kafka takes.
TOO_LARGE = "TOO_LARGE"
#: Bytes librdkafka adds to a record's key and value when it checks message.max.bytes (the
#: record's framing: lengths, attributes, offsets; generously rounded up).
_MESSAGE_OVERHEAD = 256


def encoding_error(exc: ColumnValueError) -> RowError:
    """Why a row whose record could not be encoded is rejected."""
    return RowError(exc.field, "too_large" if exc.code == TOO_LARGE else "unencodable", exc.message)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to map and encode rows; picklable, sent once to each worker."""

    entry: CatalogEntry
    record_schema: dict[str, Any]
    sources: dict[str, FieldSource]
    schema_id: int
    schema: dict[str, Any]
    identity: Identity
    #: The largest change record (key and value) Kafka takes from this connector's producer.
    max_bytes: int = MESSAGE_MAX_BYTES


class ChangeEncoder:
    """Change records of one entry, a batch at a time: the records (``after``) are encoded from
    columns (:class:`RecordColumnsEncoder`), the envelope around them by hand, with what is the
    same for the whole batch (op, source system, time) written once."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self.entry = spec.entry
        self.mapper = RowMapper(spec.entry, spec.record_schema, spec.sources)
        self.records = RecordColumnsEncoder(spec.record_schema)
        self.envelope = EnvelopeEncoder(spec.schema_id, spec.schema)
        self._source = source_of(spec.identity, "")

    def encode(
        self,
        op: Op,
        key: str,
        record: dict[str, Any] | None,
        position: str,
        identity: str,
        ts_ms: int,
    ) -> tuple[bytes, str]:
        """One change record's bytes and its event id (``record`` is ignored for a delete)."""
        columns = None if op == "d" or record is None else {k: [v] for k, v in record.items()}
        values, eids = self.encode_batch(op, [key], columns, [position], [identity], ts_ms)
        return values[0], eids[0]

    def encode_batch(
        self,
        op: Op,
        keys: Sequence[str],
        records: Mapping[str, Sequence[Any]] | None,
        positions: Sequence[str],
        identities: Sequence[str],
        ts_ms: int,
    ) -> tuple[list[bytes], list[str]]:
        """The change records of ``keys`` (their records as columns, None for deletes) and their
        event ids. :class:`ColumnValueError` if a value cannot be encoded."""
        n = len(keys)
        afters: list[bytes | None]
        if op == "d" or records is None:
            afters = [None] * n
        else:
            afters = list(self.records.encode(records, n))
        try:
            eids = event_ids(self.entry.id, op, keys, identities, afters)
        except UnicodeEncodeError as exc:
            # A key or a sender's id with text that has no UTF-8 (a lone surrogate in JSON).
            raise ColumnValueError(
                f"the key or id is not UTF-8 text: {exc}", code="BAD_VALUE"
            ) from exc
        values = self.envelope.encode_rows(
            {"op": op, "source": self._source, "ts_ms": ts_ms},
            {"source.position": positions, "event_id": eids},
            afters,
        )
        limit = self.spec.max_bytes - _MESSAGE_OVERHEAD
        # Keys are short: four bytes a character bounds their UTF-8 without encoding them.
        if values and max(map(len, values)) + 4 * max(map(len, keys)) > limit:
            for key, value in zip(keys, values, strict=True):
                size = len(value) + len(key.encode("utf-8"))
                if size > limit:
                    raise ColumnValueError(
                        f"the change record would be {size:,} bytes, more than the {limit:,} "
                        f"Kafka takes here (publish.producer message.max.bytes "
                        f"{self.spec.max_bytes:,})",
                        code=TOO_LARGE,
                    )
        return values, eids

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


class Rejected(NamedTuple):
    """A row that is not a record, and why."""

    number: int
    #: Its key, when its key fields are readable ("" otherwise).
    key: str
    errors: list[RowError]
    #: Its cells by column, for the dead letter (None for a row that had no cells).
    cells: dict[str, Any] | None


class EncodedBatch(NamedTuple):
    """What became of a batch of a file's rows."""

    rows: int
    #: The number of the batch's last row.
    last: int
    #: Rows after the resume point.
    fresh: int
    #: The keys of the rows that are records, in order (those before the resume point too).
    keys: list[str]
    #: The change records of the records after the resume point: the last ``len(values)`` keys.
    values: list[bytes]
    rejected: list[Rejected]


def encode_file_batch(encoder: ChangeEncoder, batch: FileBatch) -> EncodedBatch:
    ts_ms = int(time.time() * 1000)
    columns = encoder.mapper.columns
    rejected: list[Rejected] = []

    def reject(number: int, row: tuple[Any, ...], errors: list[RowError], key: str) -> None:
        rejected.append(Rejected(number, key, errors, dict(zip(columns, row, strict=True))))

    cells: list[tuple[Any, ...]] = []
    numbers: list[int] = []
    for number, row in batch.rows:
        if isinstance(row, str):
            rejected.append(Rejected(number, "", [RowError(None, "malformed", row)], None))
        else:
            cells.append(row)
            numbers.append(number)
    mapped = encoder.mapper.map_batch(cells)
    values = mapped.values
    if mapped.errors:
        for i, errors in mapped.errors.items():
            reject(numbers[i], cells[i], errors, encoder.key_of_rejected(cells[i]) or "")
        good = [i for i in range(len(cells)) if i not in mapped.errors]
        values = {f: [column[i] for i in good] for f, column in values.items()}
        numbers = [numbers[i] for i in good]
        cells = [cells[i] for i in good]
    keys = record_keys(encoder.entry, values, range(len(numbers)))
    # Rows are in order, so those after the resume point are the last ones.
    old = bisect_right(numbers, batch.resume)
    if old:
        values = {f: column[old:] for f, column in values.items()}
    fresh = numbers[old:]
    encoded, failed = _encode(
        encoder,
        batch.op,
        keys[old:],
        values,
        [f"{batch.name}#{n}" for n in fresh],
        [f"{batch.digest}:{n}" for n in fresh],
        ts_ms,
    )
    if failed:
        # A value the encoder could not write (rare: converters check them): reject its row.
        for i, error in failed.items():
            reject(fresh[i], cells[old + i], [error], keys[old + i])
        keep = [i for i in range(len(fresh)) if i not in failed]
        keys = keys[:old] + [keys[old + i] for i in keep]
        encoded = [encoded[i] for i in keep]
    rejected.sort(key=lambda r: r.number)
    rows = batch.rows
    return EncodedBatch(
        len(rows),
        rows[-1][0] if rows else batch.resume,
        sum(n > batch.resume for n, _ in rows),
        keys,
        encoded,
        rejected,
    )


def _encode(
    encoder: ChangeEncoder,
    op: Op,
    keys: list[str],
    columns: Mapping[str, list[Any]],
    positions: list[str],
    identities: list[str],
    ts_ms: int,
) -> tuple[list[bytes], dict[int, RowError]]:
    """The change records of a batch, and which of them could not be encoded (then the batch is
    encoded row by row to find them; they have placeholders in the list)."""
    try:
        return encoder.encode_batch(op, keys, columns, positions, identities, ts_ms)[0], {}
    except ColumnValueError:
        pass
    out: list[bytes] = []
    failed: dict[int, RowError] = {}
    for i in range(len(keys)):
        one = {f: column[i : i + 1] for f, column in columns.items()}
        try:
            out += encoder.encode_batch(
                op, keys[i : i + 1], one, positions[i : i + 1], identities[i : i + 1], ts_ms
            )[0]
        except ColumnValueError as exc:
            out.append(b"")
            failed[i] = encoding_error(exc)
    return out, failed


# -- worker processes ---------------------------------------------------------------------------

_WORKER: ChangeEncoder | None = None


def init_worker(spec: EncoderSpec) -> None:
    global _WORKER
    _WORKER = ChangeEncoder(spec)


def work(batch: FileBatch) -> EncodedBatch:
    assert _WORKER is not None, "init_worker was not run in this process"
    return encode_file_batch(_WORKER, batch)
