"""File drop: a folder the department's system exports CSV or XLSX files into.

Each file is processed once: its rows are published, then it moves to ``done/`` (or ``failed/``
when it cannot be read at all) beside ``<name>.report.csv``, which lists every rejected row and
why. The saved position is (file name, SHA-256 of its bytes, row number), so a connector stopped
or killed in the middle of a file resumes after the last acknowledged row of that same file.
With ``delete_missing``, each file is a full export and keys of the previous export that are
missing from it are published as deletes.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.config import ConnectorConfig, FileSourceConfig
from connectors.encoding import (
    EncodedBatch,
    FileBatch,
    Row,
    encode_file_batch,
    init_worker,
    map_row,
    work,
)
from connectors.errors import SourceError
from connectors.publisher import Publisher, Rejection
from connectors.records import Op, RowError, RowMapper
from connectors.sources.base import Preview
from connectors.sources.tabular import FileFormatError, FileScan, read_rows, scan
from exchange.catalog.keys import record_key

log = logging.getLogger(__name__)
DONE, FAILED = "done", "failed"
#: Check whether it is time to save the position every this many rows.
_CHECKPOINT_EVERY = 500
#: Rows per batch handed to an encoder (in this process or a worker).
_BATCH_ROWS = 1000
#: A resume point after every row: nothing is sent again.
_ALL_ROWS = 1 << 62


@dataclass
class Report:
    """Rejected rows of one file, written as CSV (UTF-8 with BOM, so Excel shows the Chinese)."""

    file: str
    rows: int = 0
    published: int = 0
    deletes: int = 0
    rejected: list[tuple[int | str, str, RowError]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report_path: Path | None = None

    def reject(self, row: int | str, key: str, errors: list[RowError]) -> None:
        for error in errors:
            self.rejected.append((row, key, error))

    @property
    def rejected_rows(self) -> int:
        return len({row for row, _key, _err in self.rejected})

    def rows_without_key(self) -> int:
        """Rejected rows whose key could not be read (malformed, or a bad key field)."""
        return len({row for row, key, _err in self.rejected if not key})

    def write(self, path: Path) -> None:
        # backslashreplace: a rejected key may hold text with no UTF-8 (a lone surrogate).
        with path.open("w", encoding="utf-8-sig", errors="backslashreplace", newline="") as f:
            out = csv.writer(f)
            out.writerow(["row", "key", "field", "reason", "message"])
            for row, key, error in self.rejected:
                out.writerow([row, key, error.field or "", error.code, error.message])
            for note in self.notes:
                out.writerow(["", "", "", "note", note])

    def summary(self) -> str:
        return (
            f"{self.file}: {self.rows} rows, {self.published} published, "
            f"{self.rejected_rows} rejected, {self.deletes} deletes"
        )


class FileDropSource:
    def __init__(self, config: ConnectorConfig) -> None:
        assert isinstance(config.source, FileSourceConfig)
        self.config = config
        self.source: FileSourceConfig = config.source
        self.folder = config.resolve(config.source.folder)
        #: Reports of the files processed by this object, newest last (for the CLI and tests).
        self.reports: list[Report] = []
        self._executor: ProcessPoolExecutor | None = None

    # -- Source protocol ---------------------------------------------------------------------

    def check(self) -> list[str]:
        if not self.folder.is_dir():
            raise SourceError(f"drop folder {self.folder} does not exist", code="NO_FOLDER")
        if not os.access(self.folder, os.R_OK | os.W_OK | os.X_OK):
            raise SourceError(
                f"drop folder {self.folder} is not readable and writable (files are moved to "
                f"{DONE}/ and {FAILED}/ once processed)",
                code="NO_ACCESS",
            )
        waiting = self.pending(settled_only=False)
        return [f"drop folder {self.folder}: {len(waiting)} file(s) waiting"]

    def preview(self, mapper: RowMapper, limit: int) -> list[Preview]:
        out: list[Preview] = []
        for path in self.pending(settled_only=False):
            file_scan = scan(path, self.source.encoding)
            op = "r" if self.source.mode == "snapshot" else "u"
            for number, row in self._rows(path, file_scan, mapper):
                record, errors = map_row(mapper, row)
                key = record_key(mapper.entry, record) if record else None
                out.append(Preview(f"{path.name}#{number}", op, key, record, errors))
                if len(out) >= limit:
                    return out
        return out

    def run(
        self,
        publisher: Publisher,
        saved: dict[str, Any] | None,
        stop: threading.Event,
        once: bool,
    ) -> None:
        state = saved
        try:
            while not stop.is_set():
                waiting = self.pending(settled_only=True)
                # The folder was read: that is the poll (a file's own problems go to its report).
                publisher.metrics.last_poll.set_to_current_time()
                for path in waiting:
                    if stop.is_set():
                        break
                    state = self.process(path, publisher, state, stop)
                if once and not self.pending(settled_only=False):
                    break
                # With --once, files still being written are waited for, not skipped.
                wait = self.source.settle_s if once else self.source.poll_interval_s
                stop.wait(max(wait, 0.1))
        finally:
            self.close()

    # -- files -------------------------------------------------------------------------------

    def pending(self, *, settled_only: bool) -> list[Path]:
        """Files waiting in the folder, oldest first; with ``settled_only``, not those that
        changed within ``settle_s`` (they may still be being written)."""
        try:
            entries = list(self.folder.iterdir())
        except OSError as exc:
            raise SourceError(
                f"cannot list {self.folder}: {exc.strerror}", code="NO_FOLDER"
            ) from exc
        now = time.time()
        files = []
        for path in entries:
            name = path.name
            if name.startswith((".", "~$")) or not path.is_file():
                continue  # hidden, partial uploads, Excel's lock files
            if not any(fnmatch.fnmatch(name.lower(), p.lower()) for p in self.source.patterns):
                continue
            mtime = path.stat().st_mtime
            if settled_only and now - mtime < self.source.settle_s:
                continue
            files.append((mtime, name, path))
        return [path for _m, _n, path in sorted(files)]

    def process(
        self,
        path: Path,
        publisher: Publisher,
        state: dict[str, Any] | None,
        stop: threading.Event,
    ) -> dict[str, Any] | None:
        """Publish one file; returns the new saved state (unchanged if stopped midway)."""
        report = Report(path.name)
        before = _version(path)
        try:
            file_scan = scan(path, self.source.encoding)
        except FileFormatError as exc:
            report.notes.append(str(exc))
            self._finish(path, report, FAILED)
            return state
        digest = file_scan.sha256
        previous = (state or {}).get("last_export")
        same_file = (
            state is not None and state.get("file") == path.name and state.get("sha256") == digest
        )
        resume = int(state.get("row", 0)) if same_file and state else 0
        if same_file and state and state.get("complete"):
            resume = _ALL_ROWS  # published before (crash before the move): report and move only
            report.notes.append("already published earlier (identical file); nothing re-sent")
        elif resume:
            log.info("%s: resuming after row %d", path.name, resume)

        def state_for(marker: int, complete: bool = False) -> dict[str, Any]:
            return {
                "file": path.name,
                "sha256": digest,
                "row": marker,
                "complete": complete,
                "last_export": previous,
            }

        publisher.begin(state_for)
        try:
            keys, last_row = self._publish_rows(path, file_scan, publisher, report, resume, stop)
        except FileFormatError as exc:
            report.notes.append(f"stopped: {exc}")
            publisher.flush()
            failed_state = {
                **state_for(publisher.tracker.position or 0, complete=True),
                "failed": True,
            }
            publisher.save_position(failed_state)
            publisher.flush()
            self._finish(path, report, FAILED)
            return failed_state
        if keys is not None and _version(path) != before:
            # Still being written (a pause longer than settle_s): what was read stands, and the
            # whole file is read again once it settles (it is a new version then).
            log.warning("%s changed while it was read; it will be read again", path.name)
            keys = None
        if keys is None:  # stopped, or to be read again
            publisher.settle()
            return state
        baseline = False
        if self.source.delete_missing:
            baseline = self._publish_deletes(
                path, digest, keys, last_row, previous, publisher, report, resume
            )
        publisher.flush()
        destination = _free_name(self.folder / DONE, path.name)
        new_state = state_for(last_row + report.deletes, complete=True)
        if baseline:  # the next export is compared with this one
            new_state["last_export"] = {"file": f"{DONE}/{destination.name}", "sha256": digest}
        publisher.save_position(new_state)
        publisher.flush()
        self._finish(path, report, DONE, destination)
        return new_state

    def _rows(
        self, path: Path, file_scan: FileScan, mapper: RowMapper
    ) -> Iterator[tuple[int, Row]]:
        return read_rows(
            path,
            file_scan,
            mapper.columns,
            delimiter=self.source.delimiter,
            sheet=self.source.sheet,
        )

    def _publish_rows(
        self,
        path: Path,
        file_scan: FileScan,
        publisher: Publisher,
        report: Report,
        resume: int,
        stop: threading.Event,
    ) -> tuple[set[str] | None, int]:
        """Publish the rows after ``resume``; returns the keys seen (None if stopped)."""
        metrics = publisher.metrics
        op: Op = "r" if self.source.mode == "snapshot" else "u"
        keys: set[str] = set()
        name = path.name
        last_row = 0
        since_checkpoint = 0
        rows = self._rows(path, file_scan, publisher.mapper)
        batches = (
            FileBatch(name, file_scan.sha256, op, resume, chunk)
            for chunk in _chunks(rows, _BATCH_ROWS)
        )
        collect_keys = self.source.delete_missing
        for encoded in self._encoded(batches, publisher):
            if not encoded.rows:
                continue
            last_row = encoded.last
            report.rows += encoded.rows
            report.published += len(encoded.values)
            if collect_keys:
                keys.update(encoded.keys)
            dead: list[Rejection] = []
            for rejected in encoded.rejected:
                number = rejected.number
                if rejected.key:
                    keys.add(rejected.key)  # a rejected row is still in the export: not a delete
                report.reject(number, rejected.key, rejected.errors)
                if number > resume:
                    dead.append((rejected.cells, rejected.errors, f"{name}#{number}"))
            published = encoded.keys[len(encoded.keys) - len(encoded.values) :]
            # The batch's records and dead letters interleave in the source, but a position is
            # saved only once all of the batch is acknowledged, so their order does not matter.
            # A batch wholly before the resume point (published before) moves no position: saving
            # its last row would put the saved position back before the resume point.
            marker = last_row if last_row > resume else None
            publisher.send_batch(op, published, encoded.values, dead, marker)
            metrics.rows_read.inc(encoded.fresh)
            since_checkpoint += encoded.rows
            if since_checkpoint >= _CHECKPOINT_EVERY:
                since_checkpoint = 0
                publisher.checkpoint()
                if stop.is_set():
                    log.info("%s: stopping after row %d", name, last_row)
                    return None, last_row
        return keys, last_row

    def _encoded(
        self, batches: Iterator[FileBatch], publisher: Publisher
    ) -> Iterator[EncodedBatch]:
        """Results of each batch, in order: from worker processes when configured, with a few
        batches in flight so reading, encoding and producing overlap."""
        workers = self.config.publish.workers
        if workers == 0:
            for batch in batches:
                yield encode_file_batch(publisher.encoder, batch)
            return
        pool = self._pool(publisher, workers)
        in_flight: deque[Future[EncodedBatch]] = deque()
        try:
            for batch in batches:
                in_flight.append(pool.submit(work, batch))
                if len(in_flight) > 2 * workers:
                    yield in_flight.popleft().result()
        except FileFormatError:
            # Reading failed midway: the batches read before it are published first.
            while in_flight:
                yield in_flight.popleft().result()
            raise
        while in_flight:
            yield in_flight.popleft().result()

    def _pool(self, publisher: Publisher, workers: int) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the connector's process runs librdkafka threads.
            self._executor = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
                initargs=(publisher.spec,),
            )
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None

    def _publish_deletes(
        self,
        path: Path,
        digest: str,
        keys: set[str],
        last_row: int,
        previous: dict[str, Any] | None,
        publisher: Publisher,
        report: Report,
        resume: int,
    ) -> bool:
        """Publish the keys of the previous export missing from this one as deletes. True when
        the next export is to be compared with this one; False when this one cannot be trusted
        to be complete (its deletes were held back), so the next is compared with the earlier."""
        if previous is None:
            report.notes.append("first full export: no earlier export to detect deletes against")
            return True
        unknown = report.rows_without_key()
        if unknown:
            report.notes.append(
                f"deletes held back: {unknown} row(s) could not be read far enough to know their "
                f"key, so this export cannot show which keys are gone; mend them and drop the "
                f"export again (the next export is compared with {previous['file']})"
            )
            return False
        try:
            before = self._export_keys(
                self.folder / previous["file"], previous["sha256"], publisher
            )
        except (SourceError, OSError, KeyError) as exc:
            report.notes.append(f"delete detection skipped: previous export unusable: {exc}")
            return False
        missing = before - keys
        limit = self.source.delete_limit
        if len(missing) > limit * len(before):
            report.notes.append(
                f"deletes held back: {len(missing)} of the {len(before)} keys of "
                f"{previous['file']} are missing, more than delete_limit ({limit:.0%}) allows; "
                f"an export cut short looks like this. If they are really gone, raise "
                f"delete_limit and drop the export again"
            )
            log.warning("%s: %s", path.name, report.notes[-1])
            return False
        for offset, key in enumerate(sorted(missing), start=1):
            marker = last_row + offset
            report.deletes += 1
            if marker > resume:
                publisher.send(
                    "d", key, None, f"{path.name}#delete", f"{digest}:delete:{key}", marker
                )
        return True

    def _export_keys(self, path: Path, digest: str, publisher: Publisher) -> set[str]:
        file_scan = scan(path, self.source.encoding)
        if file_scan.sha256 != digest:
            raise SourceError(f"{path} changed since it was published", code="CHANGED")
        keys: set[str] = set()
        rows = self._rows(path, file_scan, publisher.mapper)
        for chunk in _chunks(rows, _BATCH_ROWS):
            # Every row counts as published before: keyed, not encoded.
            batch = FileBatch(path.name, digest, "r", _ALL_ROWS, chunk)
            encoded = encode_file_batch(publisher.encoder, batch)
            keys.update(encoded.keys)
            keys.update(r.key for r in encoded.rejected if r.key)
        return keys

    def _finish(
        self, path: Path, report: Report, outcome: str, destination: Path | None = None
    ) -> None:
        target = destination or _free_name(self.folder / outcome, path.name)
        target.parent.mkdir(exist_ok=True)
        report.report_path = target.with_name(target.name + ".report.csv")
        report.write(report.report_path)
        path.replace(target)
        self.reports.append(report)
        log.info("%s -> %s/%s", report.summary(), outcome, target.name)


def _chunks(rows: Iterator[tuple[int, Row]], size: int) -> Iterator[list[tuple[int, Row]]]:
    chunk: list[tuple[int, Row]] = []
    try:
        for item in rows:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except FileFormatError:
        # The rows read before the file turned unreadable are published first.
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def _version(path: Path) -> tuple[int, int] | None:
    """What tells one version of a file from the next without reading it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem.N.ext`` when a file of that name was processed before."""
    candidate = folder / name
    n = 1
    while candidate.exists():
        stem, dot, ext = name.rpartition(".")
        candidate = folder / (f"{stem}.{n}.{ext}" if dot else f"{name}.{n}")
        n += 1
    return candidate
