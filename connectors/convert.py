"""Source values to Avro values: text from CSV, cells from XLSX, columns from SQL, JSON values.

Pure functions. Each field gets a converter built once from its Avro type, so the per-row cost is
one call per field. A converter returns the value fastavro expects (``str``, ``int``, ``float``,
``bool``, ``datetime.date``, ``datetime.datetime``, ``Decimal``) or ``None`` for an empty cell, and
raises :class:`ConversionError` saying what it could not read.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from exchange.catalog.avro import FieldType

Converter = Callable[[Any], Any]
#: Local time of the departments' systems: naive timestamps are read in it.
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "CST")

_DATE_PATTERNS = (
    re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日"),
    re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"),
    re.compile(r"(\d{4})(\d{2})(\d{2})"),
)
_TIME = re.compile(r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?")
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_INF = float("inf")
_TRUE = frozenset({"true", "t", "yes", "y", "1", "是", "真"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "否", "假"})


class ConversionError(ValueError):
    """A source value that cannot be read as its field's type."""


@dataclass(frozen=True)
class CellError:
    """A spreadsheet cell showing an error (``#REF!``, ``#N/A``...): a formula that failed, so
    not a value, although the file stores it as that text."""

    code: str

    def __repr__(self) -> str:
        return f"Excel error {self.code}"


def converter(
    ftype: FieldType, *, values: Mapping[str, Any] | None = None, date_format: str | None = None
) -> Converter:
    """The converter of one field. ``values`` translates source codes first (e.g. 男 -> 1)."""
    base = _base_converter(ftype, date_format)
    if not values:
        return base
    table = dict(values)

    def translated(raw: Any) -> Any:
        # Codes are text in the config, but a database or spreadsheet may give the number 1.
        key = raw.strip() if isinstance(raw, str) else to_text(raw) if _numeric(raw) else None
        return base(table.get(key, raw) if key is not None else raw)

    return translated


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _base_converter(ftype: FieldType, date_format: str | None) -> Converter:
    logical, avro = ftype.logical_type, ftype.avro_type
    if logical == "date":
        return _or_null(_memoized(lambda v: to_date(v, date_format)))
    if logical in ("timestamp-millis", "timestamp-micros"):
        return _or_null(lambda v: to_timestamp(v, date_format))
    if logical == "decimal":
        return _or_null(_decimal_converter(ftype))
    if avro == "string":
        return _text_or_null
    if avro in ("int", "long"):
        bits = 31 if avro == "int" else 63
        return _or_null(_bounded(-(2**bits), 2**bits - 1, avro))
    if avro in ("float", "double"):
        return _or_null(to_float)
    if avro == "boolean":
        return _or_null(to_bool)
    raise ConversionError(f"fields of Avro type {avro} are not supported by connectors")


#: Distinct texts a memoized converter remembers before it starts afresh.
_MEMO_SIZE = 1 << 16


def _memoized(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` remembering its results for text: an export repeats the same dates (birth
    dates, reporting days) thousands of times. Only ``str`` inputs are remembered (1 and 1.0 are
    one dict key but not one text), and only values that converted (errors are raised again)."""
    memo: dict[str, Any] = {}

    def remembered(raw: Any) -> Any:
        if raw.__class__ is not str:
            return convert(raw)
        value = memo.get(raw)
        if value is None:
            value = convert(raw)
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[raw] = value
        return value

    return remembered


def _or_null(convert: Callable[[Any], Any]) -> Converter:
    """``convert``, with an empty cell (None, blank text) read as null."""

    def convert_or_null(raw: Any) -> Any:
        if raw is None or (raw.__class__ is str and not raw.strip()):
            return None
        return convert(raw)

    return convert_or_null


def _text_or_null(raw: Any) -> str | None:
    # The commonest case, kept to one call: text cells.
    if raw.__class__ is str:
        return raw.strip() or None
    return None if raw is None else to_text(raw)


def to_text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, CellError):
        raise ConversionError(f"the cell shows {raw!r} (a formula that failed), not a value")
    if isinstance(raw, bool):
        # JSON's true is a type mismatch for a text field, not the text "true".
        raise ConversionError(f"{raw!r} is a yes/no value, not text")
    if isinstance(raw, float) and raw.is_integer():
        # A spreadsheet stores 13800138000 as a number; the text is the digits, not 1.38e10.
        return str(int(raw))
    if isinstance(raw, int | float | Decimal):
        return str(raw)
    if isinstance(raw, dt.datetime | dt.date):
        return raw.isoformat()
    if isinstance(raw, bytes):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConversionError(f"bytes {raw[:32]!r} are not UTF-8 text") from None
        raise ConversionError(f"a binary value {raw[:32]!r}, not text")
    raise ConversionError(f"cannot read {type(raw).__name__} {raw!r} as text")


def _number_text(raw: Any) -> str:
    text = unicodedata.normalize("NFKC", str(raw)).strip().replace(" ", "")
    if _NUMBER.fullmatch(text) is None:
        raise ConversionError(f"{raw!r} is not a number")
    return text.replace(",", "")


def to_decimal(raw: Any) -> Decimal:
    if isinstance(raw, bool):
        raise ConversionError(f"{raw!r} is not a number")
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        if raw != raw or raw in (_INF, -_INF):  # JSON's NaN and Infinity read as floats
            raise ConversionError(f"{raw!r} is not a finite number")
        return Decimal(repr(raw))  # the shortest text of the float, not its binary expansion
    try:
        return Decimal(_number_text(raw))
    except InvalidOperation as exc:
        raise ConversionError(f"{raw!r} is not a number") from exc


def to_int(raw: Any) -> int:
    number = to_decimal(raw)
    if number != number.to_integral_value():
        raise ConversionError(f"{raw!r} is not a whole number")
    return int(number)


def _bounded(lo: int, hi: int, avro: str) -> Callable[[Any], int]:
    """``to_int`` for a field of Avro type ``avro``, whose values lie from ``lo`` to ``hi``."""

    def convert(raw: Any) -> int:
        number = to_int(raw)
        if not lo <= number <= hi:
            raise ConversionError(f"{raw!r} is out of range for Avro {avro} ({lo} to {hi})")
        return number

    return convert


def to_float(raw: Any) -> float:
    return float(to_decimal(raw))


def to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConversionError(f"{raw!r} is not a yes/no value")


def _decimal_converter(ftype: FieldType) -> Callable[[Any], Decimal]:
    scale = ftype.scale or 0
    precision = ftype.precision
    quantum = Decimal(1).scaleb(-scale)

    def convert(raw: Any) -> Decimal:
        number = to_decimal(raw)
        try:
            exact = number.quantize(quantum)
        except InvalidOperation:  # more digits than the context holds (28)
            raise ConversionError(f"{raw!r} has too many digits for a decimal") from None
        if exact != number:
            raise ConversionError(f"{raw!r} has more than {scale} decimal places")
        if precision is not None and len(exact.as_tuple().digits) > precision:
            raise ConversionError(f"{raw!r} has more than {precision} digits")
        return exact

    return convert


def to_date(raw: Any, date_format: str | None = None) -> dt.date:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if not date_format and raw.__class__ is str:
        quick = _quick_date(raw)
        if quick is not None:
            return quick
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    if date_format:
        try:
            return dt.datetime.strptime(text, date_format).date()
        except ValueError as exc:
            raise ConversionError(f"{raw!r} is not a date in format {date_format}") from exc
    parsed = _parse_date_time(text)
    if parsed is None:
        raise ConversionError(
            f"{raw!r} is not a date (expected e.g. 2021年7月27日, 2021/7/27, 2021-07-27, 20210727)"
        )
    return parsed[0]


def _quick_date(text: str) -> dt.date | None:
    """The commonest forms (20210727, 2021-07-27, 2021/7/27, 2021年7月27日) in ASCII digits
    without normalising and pattern matching; ``None`` for anything else, which the general
    parser then reads."""
    try:
        if len(text) == 8 and text.isdigit() and text.isascii():
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if text.endswith("日"):
            year, _, rest = text.partition("年")
            month, _, day = rest[:-1].partition("月")
            parts = [year, month, day]
        else:
            parts = text.split("/") if "/" in text else text.split("-")
        if (
            len(parts) == 3
            and len(parts[0]) == 4
            and 1 <= len(parts[1]) <= 2
            and 1 <= len(parts[2]) <= 2
            and all(p.isdigit() and p.isascii() for p in parts)
        ):
            return dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None  # e.g. month 13: the general parser reports it
    return None


def to_timestamp(raw: Any, date_format: str | None = None) -> dt.datetime:
    if isinstance(raw, dt.datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=CHINA_TZ)
    if isinstance(raw, dt.date):
        return dt.datetime.combine(raw, dt.time(), CHINA_TZ)
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    if date_format:
        try:
            value = dt.datetime.strptime(text, date_format)
        except ValueError as exc:
            raise ConversionError(f"{raw!r} is not a time in format {date_format}") from exc
        return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)
    parsed = _parse_date_time(text)
    if parsed is None:
        raise ConversionError(f"{raw!r} is not a date and time (e.g. 2021-07-27 08:30:00)")
    day, time = parsed
    return dt.datetime.combine(day, time, CHINA_TZ)


def _parse_date_time(text: str) -> tuple[dt.date, dt.time] | None:
    for pattern in _DATE_PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        rest = _TIME.fullmatch(text[match.end() :])
        if rest is None:
            continue
        try:
            day = dt.date(int(match[1]), int(match[2]), int(match[3]))
            hour, minute, second, micro = (rest[i] for i in range(1, 5))
            time = dt.time(
                int(hour or 0),
                int(minute or 0),
                int(second or 0),
                int((micro or "0").ljust(6, "0")),
            )
        except ValueError:
            return None
        return day, time
    return None
