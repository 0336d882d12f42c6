"""SQL table polling, after Kafka Connect's JDBC source.

Modes: ``incrementing`` (rows with a larger id than the last seen are new: op ``c``),
``timestamp`` (rows updated after the last seen time: op ``u``), ``timestamp+incrementing``
(update time, ties broken by id: the safe one). A soft-delete column turns a row into ``d``.
The position is the last (update time, id) published; it is saved once Kafka acknowledged every
row up to it. Update times are compared as the database stores them (SQLite keeps them as text,
so the text is the position; PostgreSQL as timestamps).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from connectors.config import ConnectorConfig, SqlSourceConfig
from connectors.convert import ConversionError, to_bool
from connectors.encoding import encoding_error
from connectors.errors import SourceError
from connectors.publisher import Publisher
from connectors.records import Op, RowError, RowMapper
from connectors.sources.base import Preview
from exchange.catalog.keys import record_key
from exchange.kafka.columns import ColumnValueError

log = logging.getLogger(__name__)
#: Seconds between counts of the rows polling cannot reach.
_LOOK_EVERY_S = 60.0


class SqlPollingSource:
    def __init__(self, config: ConnectorConfig) -> None:
        assert isinstance(config.source, SqlSourceConfig)
        self.config = config
        self.source: SqlSourceConfig = config.source
        try:
            url = self.source.resolved_url(config.base_dir)
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        except (ValueError, SQLAlchemyError) as exc:
            raise SourceError(f"{config.where('source.url')}: {exc}", code="BAD_URL") from exc
        except ImportError as exc:
            # A dialect SQLAlchemy knows whose driver is not installed (mysql://, oracle://).
            raise SourceError(
                f"{config.where('source.url')}: no driver for this database is installed "
                f"({exc.name or exc}); connectors read SQLite and PostgreSQL (postgresql+psycopg)",
                code="NO_DRIVER",
            ) from exc
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _read_text_leniently)
        self._where = self.engine.url.render_as_string(hide_password=True)
        self._table: sa.Table | None = None
        #: Last (updated, id) handed to the producer; the saved position lags behind it.
        self.cursor: dict[str, Any] = {}

    # -- Source protocol ---------------------------------------------------------------------

    def check(self) -> list[str]:
        table = self.table()
        with self._connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        lines = [f"table {table.name} at {self._where}: {count} row(s)"]
        unplaced = self.unplaced()
        if unplaced:
            lines.append(unplaced)
        return lines

    def unplaced(self) -> str | None:
        """Rows that polling never reaches, said plainly: those with no id or update time
        (they have no place in the order positions are taken from)."""
        table = self.table()
        mode = self.source.mode
        columns = [
            *([self.source.updated_column or ""] if "timestamp" in mode else []),
            *([self.source.id_column or ""] if "incrementing" in mode else []),
        ]
        missing = sa.or_(*(table.c[c].is_(None) for c in columns))
        with self._connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(missing)
            ).scalar_one()
        if not count:
            return None
        return (
            f"{count} row(s) of {table.name} have no {' or '.join(columns)} and are never "
            f"published: give them one"
        )

    def preview(self, mapper: RowMapper, limit: int) -> list[Preview]:
        rows = self._fetch({}, limit)
        out = []
        for row in rows:
            op, record, errors = self._map(mapper, row)
            key = record_key(mapper.entry, record) if record else None
            out.append(Preview(self._position(row), op, key, record, errors))
        return out

    def run(
        self,
        publisher: Publisher,
        saved: dict[str, Any] | None,
        stop: threading.Event,
        once: bool,
    ) -> None:
        self.cursor = dict(saved or {})
        publisher.begin(lambda marker: dict(marker))
        said, next_look = None, 0.0
        while not stop.is_set():
            try:
                drained = self.poll(publisher, stop)
                if drained and time.monotonic() >= next_look:
                    # Counted at most once a minute, and logged when the count changes.
                    unplaced, next_look = self.unplaced(), time.monotonic() + _LOOK_EVERY_S
                    if unplaced and unplaced != said:
                        log.warning("%s", unplaced)
                    said = unplaced
            except SQLAlchemyError as exc:
                # The database may come back: say so and retry at the next interval.
                log.error("poll of %s failed: %s", self._where, _short(exc))
                drained = True
            else:
                publisher.metrics.last_poll.set_to_current_time()
            publisher.checkpoint()
            if once and drained:
                break
            if drained:
                stop.wait(self.source.poll_interval_s)

    # -- polling -----------------------------------------------------------------------------

    def poll(self, publisher: Publisher, stop: threading.Event) -> bool:
        """Publish one batch after the cursor; True when the table has no more rows now."""
        rows = self._fetch(self.cursor, self.source.batch_size)
        mapper = publisher.mapper
        for row in rows:
            op, record, errors = self._map(mapper, row)
            position = self._position(row)
            marker = self._marker(row)
            if errors:
                publisher.metrics.rows_read.inc()
                publisher.reject(_cells(row), errors, position, marker)
            else:
                assert record is not None
                publisher.metrics.rows_read.inc()
                key = record_key(publisher.entry, record)
                try:
                    publisher.send(op, key, record, position, position, marker)
                except ColumnValueError as exc:
                    # A value its field's type cannot hold (nothing was sent): set it aside.
                    publisher.reject(_cells(row), [encoding_error(exc)], position, marker)
            self.cursor = marker
            if stop.is_set():
                return True
        publisher.poll(0)
        return len(rows) < self.source.batch_size

    def table(self) -> sa.Table:
        if self._table is None:
            try:
                self._table = sa.Table(self.source.table, sa.MetaData(), autoload_with=self.engine)
            except sa.exc.NoSuchTableError as exc:
                raise SourceError(
                    f"table {self.source.table!r} not found at {self._where}", code="NO_TABLE"
                ) from exc
            except SQLAlchemyError as exc:
                raise SourceError(
                    f"cannot reach {self._where}: {_short(exc)}", code="UNREACHABLE"
                ) from exc
            wanted = [
                *self.config.fields_columns(),
                self.source.id_column,
                self.source.updated_column,
                self.source.soft_delete.column if self.source.soft_delete else None,
            ]
            missing = sorted({c for c in wanted if c and c not in self._table.c})
            if missing:
                raise SourceError(
                    f"table {self.source.table} has no column(s) {', '.join(missing)} "
                    f"(it has: {', '.join(self._table.c.keys())})",
                    code="MISSING_COLUMNS",
                )
        return self._table

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise SourceError(
                f"cannot reach {self._where}: {_short(exc)}", code="UNREACHABLE"
            ) from exc

    def _updated(self, table: sa.Table) -> sa.ColumnElement[Any]:
        column = table.c[self.source.updated_column or ""]
        if self.engine.dialect.name == "sqlite":
            # SQLite keeps times as text; compare the stored text, not a re-formatted datetime.
            return sa.type_coerce(column, sa.String())
        return column

    def _fetch(self, cursor: dict[str, Any], limit: int) -> list[sa.Row[Any]]:
        table = self.table()
        mode = self.source.mode
        columns: list[sa.ColumnElement[Any]] = [table.c[c] for c in self.config.fields_columns()]
        order: list[sa.ColumnElement[Any]] = []
        condition: sa.ColumnElement[bool] | None = None
        last_id, last_updated = cursor.get("id"), self._cursor_time(cursor.get("updated"))
        if "timestamp" in mode:
            updated = self._updated(table)
            columns.append(updated.label("_updated"))
            order.append(updated)
            condition = updated.is_not(None)
            if last_updated is not None:
                after = updated > last_updated
                if mode == "timestamp+incrementing" and last_id is not None:
                    id_col = table.c[self.source.id_column or ""]
                    after = sa.or_(after, sa.and_(updated == last_updated, id_col > last_id))
                condition = sa.and_(condition, after)
        if "incrementing" in mode:
            id_col = table.c[self.source.id_column or ""]
            columns.append(id_col.label("_id"))
            order.append(id_col)
            if mode == "incrementing" and last_id is not None:
                condition = id_col > last_id
            # A row without an id has no place in the order (see unplaced()).
            has_id = id_col.is_not(None)
            condition = has_id if condition is None else sa.and_(condition, has_id)
        if self.source.soft_delete:
            columns.append(table.c[self.source.soft_delete.column].label("_deleted"))
        query = sa.select(*columns).order_by(*order).limit(limit)
        if condition is not None:
            query = query.where(condition)
        with self._connect() as conn:
            return list(conn.execute(query))

    def _cursor_time(self, value: Any) -> Any:
        if value is None or self.engine.dialect.name == "sqlite":
            return value
        return dt.datetime.fromisoformat(value)

    def _marker(self, row: sa.Row[Any]) -> dict[str, Any]:
        marker: dict[str, Any] = {}
        values = row._mapping
        if "_id" in values:
            marker["id"] = values["_id"]
        if "_updated" in values:
            updated = values["_updated"]
            marker["updated"] = updated.isoformat() if isinstance(updated, dt.datetime) else updated
        for name, value in marker.items():
            if isinstance(value, bytes):
                # A position must be saved and compared again; bytes that are not text can be
                # neither, so this row cannot be passed over: the operator has to mend it.
                column = self.source.id_column if name == "id" else self.source.updated_column
                raise SourceError(
                    f"table {self.source.table}: a row's {column} is {value[:32]!r}, not UTF-8 "
                    f"text, so it cannot be a saved position (the rows before it were published)",
                    code="BAD_POSITION",
                )
        return marker

    def _position(self, row: sa.Row[Any]) -> str:
        marker = self._marker(row)
        parts = [f"{k}={v}" for k, v in sorted(marker.items())]
        return f"{self.source.table}:{','.join(parts)}"

    def _map(
        self, mapper: RowMapper, row: sa.Row[Any]
    ) -> tuple[Op, dict[str, Any] | None, list[RowError]]:
        cells = _cells(row)
        if self._deleted(row):
            record, errors = mapper.key_record(mapper.cells(cells))
            return "d", record, errors
        record, errors = mapper.to_record(cells)
        return ("c" if self.source.mode == "incrementing" else "u"), record, errors

    def _deleted(self, row: sa.Row[Any]) -> bool:
        soft = self.source.soft_delete
        if soft is None:
            return False
        value = row._mapping["_deleted"]
        if value is None:
            return False
        if soft.values is not None:
            return value in soft.values or str(value) in {str(v) for v in soft.values}
        try:
            return to_bool(value)
        except ConversionError:
            return False


def _read_text_leniently(dbapi_connection: Any, _record: Any) -> None:
    # SQLite does not check that TEXT is UTF-8 (a legacy system may write GBK bytes), and
    # sqlite3's default decoding fails the whole fetch on one such value, so the poll would stop
    # at that row for ever. Handing the bytes on makes it one rejected row instead.
    dbapi_connection.text_factory = _text_or_bytes


def _text_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _cells(row: sa.Row[Any]) -> dict[str, Any]:
    return {k: v for k, v in row._mapping.items() if not k.startswith("_")}


def _short(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return (str(orig if orig is not None else exc).splitlines() or [type(exc).__name__])[0]
