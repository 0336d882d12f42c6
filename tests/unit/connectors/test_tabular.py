import datetime as dt
from pathlib import Path

import pytest

from connectors.sources.tabular import FileFormatError, read_rows, scan

HEADER = "身份证号,姓名\n"


def rows_of(path: Path, columns: list[str], sheet: str | None = None) -> list[object]:
    return list(read_rows(path, scan(path, "auto"), columns, delimiter=",", sheet=sheet))


def write(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "expected"), [("utf-8", "utf-8-sig"), ("gbk", "gb18030"), ("gb18030", "gb18030")]
)
def test_encoding_is_detected(tmp_path: Path, encoding: str, expected: str) -> None:
    path = write(tmp_path / "a.csv", HEADER + "1,张三\n", encoding)
    assert scan(path, "auto").encoding == expected


def test_gb18030_characters_outside_gbk_are_read(tmp_path: Path) -> None:
    # 䶮 (U+4DAE) and 𠀀 (U+20000) exist in GB18030 but not in GBK.
    path = write(tmp_path / "a.csv", HEADER + "1,王䶮𠀀\n", "gb18030")
    rows = list(
        read_rows(path, scan(path, "auto"), ["身份证号", "姓名"], delimiter=",", sheet=None)
    )
    assert rows == [(2, ("1", "王䶮𠀀"))]


def test_a_file_that_is_not_in_the_configured_encoding_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,name\n1,Li\n2,张三\n", "gbk")
    with pytest.raises(FileFormatError, match=r"line 3 \(byte 15\) is not valid utf-8"):
        scan(path, "utf-8")
    # Past the first chunk read (1 MiB): lines are counted across chunks.
    path = write(tmp_path / "b.csv", "id,name\n" + "1,Li\n" * 300_000 + "2,张三\n", "gbk")
    with pytest.raises(FileFormatError, match=r"line 300002 \(byte 1500010\)"):
        scan(path, "utf-8")


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "\ufeff" + HEADER + "1,张三\n", "utf-8")
    rows = rows_of(path, ["身份证号"])
    assert rows == [(2, ("1",))]


def test_missing_columns_fail_the_file_and_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", HEADER + "1,张三\n", "utf-8")
    with pytest.raises(FileFormatError, match=r"lacks column.*性别.*it has: 身份证号, 姓名"):
        rows_of(path, ["性别"])


def test_rows_with_the_wrong_number_of_cells_are_reported_blank_lines_skipped(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "a.csv", HEADER + "1,张三\n\n2\n3,李四\n", "utf-8")
    rows = rows_of(path, ["姓名"])
    assert rows == [
        (2, ("张三",)),
        (4, "has 1 cells, the header has 2"),
        (5, ("李四",)),
    ]


def test_xlsx_cells_keep_their_types(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "数据"
    sheet.append(["名称", "日期", "金额"])
    sheet.append(["朔州市煤业", dt.datetime(2021, 7, 27), 1234.5])
    sheet.append([None, None, None])
    sheet.append(["右玉农牧", "2021年7月28日", "1,000"])
    path = tmp_path / "a.xlsx"
    book.save(path)
    rows = list(
        read_rows(path, scan(path, "auto"), ["名称", "日期", "金额"], delimiter=",", sheet="数据")
    )
    assert rows == [
        (2, ("朔州市煤业", dt.datetime(2021, 7, 27), 1234.5)),
        (4, ("右玉农牧", "2021年7月28日", "1,000")),
    ]
    with pytest.raises(FileFormatError, match="no sheet '其他'"):
        rows_of(path, ["名称"], "其他")


def test_a_broken_xlsx_fails_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.xlsx"
    path.write_bytes(b"not a zip")
    with pytest.raises(FileFormatError, match="not a readable XLSX"):
        rows_of(path, ["x"])


def test_bad_csv_rejects_its_row_and_a_quote_never_closed_is_named(tmp_path: Path) -> None:
    text = HEADER + '1,张三\n2,"李"四\n3,王五\n4,"赵六\n5,钱七\n'
    rows = rows_of(write(tmp_path / "a.csv", text, "utf-8"), ["姓名"])
    assert rows == [
        (2, ("张三",)),
        (3, "not valid CSV (line 3): ',' expected after '\"'"),
        (4, ("王五",)),
        (
            5,
            "a quote opened in this row is never closed: the lines after it, to the end of the "
            "file (line 6), could not be read as rows",
        ),
    ]


def test_a_cell_larger_than_the_csv_modules_default_limit_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", HEADER + "1," + "址" * 200_000 + "\n", "utf-8")
    assert rows_of(path, ["姓名"]) == [(2, ("址" * 200_000,))]


def _xlsx(path: Path, rows: list[list[object]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


def test_excel_error_cells_are_not_values(tmp_path: Path) -> None:
    from connectors.convert import CellError

    path = _xlsx(tmp_path / "a.xlsx", [["身份证号", "姓名"], ["1", "#REF!"], ["#N/A", "李四"]])
    # openpyxl writes such strings as text; Excel's own error cells read back the same way.
    assert rows_of(path, ["身份证号", "姓名"]) == [
        (2, ("1", CellError("#REF!"))),
        (3, (CellError("#N/A"), "李四")),
    ]


def test_an_xlsx_sheet_cut_short_fails_after_the_rows_before_it(tmp_path: Path) -> None:
    import zipfile

    good = _xlsx(tmp_path / "good.xlsx", [["身份证号"], *([str(i)] for i in range(50))])
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]
            dst.writestr(item, data)
    read: list[object] = []
    with pytest.raises(FileFormatError, match=r"broken.xlsx: the sheet cannot be read after row"):
        for row in read_rows(broken, scan(broken, "auto"), ["身份证号"], delimiter=",", sheet=None):
            read.append(row)
    assert 0 < len(read) < 50
