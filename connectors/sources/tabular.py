"""Reading CSV and XLSX exports as rows of cells, with their row numbers. Pure I/O, no Kafka.

Row numbers are those a person sees in a spreadsheet: the header is row 1.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from connectors.convert import CellError
from connectors.errors import SourceError

_CHUNK = 1 << 20
#: The largest CSV cell read (the csv module's default is 128 KiB, and a cell over it failed the
#: whole file). A row too large for Kafka is rejected on its own when it is encoded.
_CSV_FIELD_LIMIT = 1 << 26


class FileFormatError(SourceError):
    """The file as a whole cannot be read: wrong encoding, no header, missing columns."""


@dataclass(frozen=True)
class FileScan:
    sha256: str
    #: Python codec name the file decodes with (CSV), or None (XLSX).
    encoding: str | None


def scan(path: Path, encoding: str) -> FileScan:
    """The file's digest and, for CSV, its encoding, in one pass over the bytes.

    ``auto`` takes UTF-8 when every byte decodes as UTF-8 and GB18030 otherwise (GB18030 is a
    superset of GBK, so GBK exports decode too); an explicit encoding must decode the whole file.
    """
    digest = hashlib.sha256()
    is_csv = path.suffix.lower() != ".xlsx"
    candidates = ["utf-8", "gb18030"] if encoding == "auto" else [encoding]
    decoders = {name: codecs.getincrementaldecoder(name)() for name in candidates} if is_csv else {}
    failures: dict[str, str] = {}
    offset = lines = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                for name in list(decoders):
                    try:
                        decoders[name].decode(chunk)
                    except UnicodeDecodeError as exc:
                        # The line, for a person to find it: a row pasted in from elsewhere.
                        line = lines + chunk.count(b"\n", 0, exc.start) + 1
                        failures[name] = (
                            f"line {line} (byte {offset + exc.start}) is not valid {name}"
                        )
                        del decoders[name]
                offset += len(chunk)
                if decoders:
                    lines += chunk.count(b"\n")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}", code="UNREADABLE") from exc
    for name in list(decoders):
        try:
            decoders[name].decode(b"", final=True)
        except UnicodeDecodeError:
            failures[name] = f"the file ends inside a {name} character"
            del decoders[name]
    if not is_csv:
        return FileScan(digest.hexdigest(), None)
    if not decoders:
        tried = "; ".join(f"{name}: {why}" for name, why in failures.items())
        raise FileFormatError(
            f"{path.name}: cannot decode as {' or '.join(candidates)} ({tried})", code="ENCODING"
        )
    chosen = next(iter(decoders))
    return FileScan(digest.hexdigest(), "utf-8-sig" if chosen == "utf-8" else chosen)


def read_rows(
    path: Path, scan_result: FileScan, columns: list[str], *, delimiter: str, sheet: str | None
) -> Iterator[tuple[int, tuple[Any, ...] | str]]:
    """``(row number, cells)`` for each data row, the cells of ``columns`` in that order; a
    malformed row comes as ``(row number, why)``. :class:`FileFormatError` when the header lacks
    mapped columns."""
    if path.suffix.lower() == ".xlsx":
        yield from _xlsx_rows(path, columns, sheet)
    else:
        assert scan_result.encoding is not None
        yield from _csv_rows(path, scan_result.encoding, columns, delimiter)


def _check_header(path: Path, header: list[str], columns: list[str]) -> dict[str, int]:
    names = [str(h).strip() if h is not None else "" for h in header]
    missing = [c for c in columns if c not in names]
    if missing:
        raise FileFormatError(
            f"{path.name}: header row lacks column(s) {', '.join(missing)} "
            f"(it has: {', '.join(n for n in names if n) or 'nothing'})",
            code="MISSING_COLUMNS",
        )
    twice = sorted({c for c in columns if names.count(c) > 1})
    if twice:
        raise FileFormatError(
            f"{path.name}: column(s) {', '.join(twice)} appear more than once in the header",
            code="DUPLICATE_COLUMNS",
        )
    return {c: names.index(c) for c in columns}


def _picker(index: dict[str, int], columns: list[str]) -> Callable[[list[str]], tuple[str, ...]]:
    """Picks the cells of ``columns`` out of a row, in that order, in one C call."""
    positions = [index[c] for c in columns]
    if not positions:
        return lambda cells: ()
    if len(positions) == 1:
        (only,) = positions
        return lambda cells: (cells[only],)
    return itemgetter(*positions)


def _csv_rows(
    path: Path, encoding: str, columns: list[str], delimiter: str
) -> Iterator[tuple[int, tuple[Any, ...] | str]]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with path.open("r", encoding=encoding, newline="") as f:
        # strict: a quote never closed is an error at the end of the file, not one silent cell
        # holding every line after it; errors are per row, and reading goes on after them.
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise FileFormatError(
                f"{path.name}: the header row is not valid CSV: {exc}", code="BAD_CSV"
            ) from exc
        if header is None:
            raise FileFormatError(f"{path.name}: the file is empty", code="EMPTY")
        pick = _picker(_check_header(path, header, columns), columns)
        width = len(header)
        number = 1
        while True:
            # One for loop per run of good rows: no per-row cost for catching errors.
            start = number + 1
            try:
                for number, cells in enumerate(reader, start=start):
                    if not cells or not any(c.strip() for c in cells):
                        continue  # blank line
                    if len(cells) != width:
                        yield number, f"has {len(cells)} cells, the header has {width}"
                        continue
                    yield number, pick(cells)
                return
            except csv.Error as exc:
                number += 1
                yield number, _not_csv(exc, reader.line_num)


def _not_csv(exc: csv.Error, line: int) -> str:
    if "unexpected end of data" in str(exc):
        return (
            f"a quote opened in this row is never closed: the lines after it, to the end of "
            f"the file (line {line}), could not be read as rows"
        )
    return f"not valid CSV (line {line}): {exc}"


def _xlsx_rows(
    path: Path, columns: list[str], sheet: str | None
) -> Iterator[tuple[int, tuple[Any, ...] | str]]:
    from openpyxl import load_workbook  # imported here: only XLSX drops need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise FileFormatError(
            f"{path.name}: not a readable XLSX file: {exc}", code="BAD_XLSX"
        ) from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise FileFormatError(
                f"{path.name}: no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)})",
                code="NO_SHEET",
            )
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise FileFormatError(f"{path.name}: the sheet is empty", code="EMPTY")
        index = _check_header(path, list(header), columns)
        positions = [index[c] for c in columns]
        number = 1
        try:
            for number, cells in enumerate(rows, start=2):
                if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                    continue
                # A short row: openpyxl leaves out trailing empty cells.
                yield (
                    number,
                    tuple(_xlsx_cell(cells[i]) if i < len(cells) else None for i in positions),
                )
        except (SyntaxError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            # The sheet's XML is cut short or broken (XML parse errors are SyntaxErrors, with
            # lxml or without): the rows before it were read.
            raise FileFormatError(
                f"{path.name}: the sheet cannot be read after row {number}: {exc}", code="BAD_XLSX"
            ) from exc
    finally:
        book.close()


#: What Excel shows in a cell whose formula failed; openpyxl reads it as this text.
_EXCEL_ERRORS = frozenset(("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"))


def _xlsx_cell(value: Any) -> Any:
    if value.__class__ is str and value in _EXCEL_ERRORS:
        return CellError(value)
    return value
