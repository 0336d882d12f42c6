import datetime as dt
import unicodedata
from decimal import Decimal

import pytest

from connectors.convert import (
    CHINA_TZ,
    ConversionError,
    _parse_date_time,
    _quick_date,
    converter,
)
from exchange.catalog.avro import FieldType


def field(avro: str, logical: str | None = None, **kw: int) -> FieldType:
    return FieldType("f", avro, logical, True, kw.get("precision"), kw.get("scale"))


DATE = converter(field("int", "date"))


@pytest.mark.parametrize(
    "text",
    [
        "2021年7月27日",
        "2021/7/27",
        "2021-07-27",
        "20210727",
        "2021.7.27",
        " 2021/07/27 ",
        "２０２１/7/27",
    ],
)
def test_dates_in_the_formats_departments_export(text: str) -> None:
    assert DATE(text) == dt.date(2021, 7, 27)


def test_date_cells_and_datetimes_become_dates() -> None:
    assert DATE(dt.datetime(2021, 7, 27, 10, 30)) == dt.date(2021, 7, 27)
    assert DATE(dt.date(2021, 7, 27)) == dt.date(2021, 7, 27)
    assert DATE("2021-07-27 00:00:00") == dt.date(2021, 7, 27)


@pytest.mark.parametrize(
    "text", ["1990年13月5日", "2021/2/30", "yesterday", "2021-07", "202107271"]
)
def test_impossible_or_unknown_dates_are_refused_with_the_value(text: str) -> None:
    with pytest.raises(ConversionError, match="is not a date"):
        DATE(text)


def test_configured_date_format() -> None:
    convert = converter(field("int", "date"), date_format="%d.%m.%Y")
    assert convert("27.07.2021") == dt.date(2021, 7, 27)
    with pytest.raises(ConversionError, match="format"):
        convert("2021-07-27")


def test_naive_timestamps_are_china_time() -> None:
    convert = converter(field("long", "timestamp-millis"))
    assert convert("2021/7/27 08:30:05") == dt.datetime(2021, 7, 27, 8, 30, 5, tzinfo=CHINA_TZ)


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_empty_cells_are_null(empty: object) -> None:
    for ftype in (field("string"), field("int"), field("int", "date"), field("double")):
        assert converter(ftype)(empty) is None


def test_numbers_with_thousands_separators() -> None:
    assert converter(field("long"))("1,234,567") == 1234567
    assert converter(field("double"))("1,234.5") == 1234.5
    assert converter(field("int"))("１，２３４") == 1234  # full-width digits and comma
    assert converter(field("int"))(3.0) == 3  # a spreadsheet's number cell
    for bad in ("12,34", "1.2.3", "abc", "1 2x"):
        with pytest.raises(ConversionError, match="not a number"):
            converter(field("long"))(bad)
    with pytest.raises(ConversionError, match="whole number"):
        converter(field("int"))("2.5")


def test_whole_numbers_must_fit_their_avro_type() -> None:
    assert converter(field("int"))("2,147,483,647") == 2**31 - 1
    assert converter(field("int"))(-(2**31)) == -(2**31)
    assert converter(field("long"))(str(2**63 - 1)) == 2**63 - 1
    for avro, value in (("int", "2147483648"), ("int", -(2**31) - 1), ("long", 2**63)):
        with pytest.raises(ConversionError, match=f"out of range for Avro {avro}"):
            converter(field(avro))(value)


def test_numbers_that_are_not_finite_or_too_long_are_refused() -> None:
    # JSON's NaN and Infinity parse as floats; Decimal's context holds 28 digits.
    for avro in ("int", "long", "double", "float"):
        for value in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(ConversionError, match="not a finite number"):
                converter(field(avro))(value)
    convert = converter(field("bytes", "decimal", precision=20, scale=2))
    for value in ("1e30", "1" * 29, 1e30):
        with pytest.raises(ConversionError, match=r"too many digits|not a number"):
            convert(value)


def test_decimals_keep_their_scale_and_precision() -> None:
    convert = converter(field("bytes", "decimal", precision=6, scale=2))
    assert convert("1,234.5") == Decimal("1234.50")
    assert convert(12.25) == Decimal("12.25")
    with pytest.raises(ConversionError, match="decimal places"):
        convert("1.234")
    with pytest.raises(ConversionError, match="digits"):
        convert("123456.00")


def test_text_from_number_cells_has_no_float_noise() -> None:
    assert converter(field("string"))(13800138000.0) == "13800138000"
    assert converter(field("string"))("  张三 ") == "张三"


def test_bytes_are_not_text_and_the_error_says_which_kind() -> None:
    # A database hands over bytes for a BLOB, and (connectors.sources.sql) for TEXT not in UTF-8.
    with pytest.raises(ConversionError, match=r"not UTF-8 text"):
        converter(field("string"))("张三".encode("gbk"))
    with pytest.raises(ConversionError, match=r"a binary value b'abc', not text"):
        converter(field("string"))(b"abc")


def test_value_maps_translate_codes_first() -> None:
    convert = converter(field("string"), values={"男": "1", "女": "2"})
    assert convert("男") == "1"
    assert convert(" 女 ") == "2"
    assert convert("9") == "9"  # unmapped values pass through to the rules


def test_value_maps_find_numeric_cells_by_their_text() -> None:
    # Codes are text in YAML; SQL and XLSX give numbers.
    convert = converter(field("string"), values={"1": "参保缴费", "2": "暂停"})
    assert convert(1) == convert(1.0) == convert(Decimal("1")) == convert("1") == "参保缴费"
    assert convert(3) == "3"
    with pytest.raises(ConversionError, match="a yes/no value, not text"):
        convert(True)


def test_a_yes_no_value_is_not_text() -> None:
    with pytest.raises(ConversionError, match="True is a yes/no value, not text"):
        converter(field("string"))(True)


def test_booleans() -> None:
    convert = converter(field("boolean"))
    assert convert("是") is True and convert("N") is False and convert(1) is True
    with pytest.raises(ConversionError):
        convert("maybe")


def test_the_quick_date_path_agrees_with_the_general_parser() -> None:
    texts = [
        f"{y}{sep}{m}{sep}{d}"
        for y in ("1940", "2021", "0999")
        for m in ("1", "01", "7", "12", "13", "0", "007")
        for d in ("1", "09", "27", "30", "31", "32")
        for sep in ("-", "/", "")
    ] + [
        *(f"{y}年{m}月{d}日" for y in ("2021", "202") for m in ("7", "13") for d in ("1", "31")),
        *("2021-07-27x", "2021/07", "１９９０0101", "2021-7/27", "2024/2/29", "2023/2/29"),
        *("2021年7月日", "年7月27日", "2021年7月27", "２０２１年7月27日", "2021年7月27日 "),
    ]
    for text in texts:
        quick = _quick_date(text)
        general = _parse_date_time(unicodedata.normalize("NFKC", text).strip())
        if quick is not None:
            assert general is not None and quick == general[0], text
        elif general is not None:
            # What the quick path leaves is still read, by the general parser.
            assert DATE(text) == general[0], text


def test_remembered_dates_are_the_same_and_errors_are_raised_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import connectors.convert as convert

    monkeypatch.setattr(convert, "_MEMO_SIZE", 2)
    read = converter(field("int", "date"))
    for _ in range(3):
        assert read("2021年7月27日") == dt.date(2021, 7, 27)
        assert read("20210728") == dt.date(2021, 7, 28)
        assert read("2021/7/29") == dt.date(2021, 7, 29)  # past the size: starts afresh
        with pytest.raises(ConversionError, match="not a date"):
            read("2021-02-30")
    assert read(dt.datetime(2021, 7, 27, 8, 0)) == dt.date(2021, 7, 27)  # not text: not kept
