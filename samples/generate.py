"""Generate the sample departments' source data: ``python -m samples.generate [OUT_DIR]``.

- ``gongan/population.csv``: 公安 population export, GBK, Chinese headers, mixed date formats,
  and a few deliberately bad rows (each named in ``BAD_POPULATION_ROWS``);
- ``scjg/legal_entities.xlsx``: 市场监管 legal entities, an Excel export with date cells and
  amounts with thousands separators, one bad credit code;
- ``rsj/social_insurance.db``: 人社 enrolments in SQLite, with an update time and a soft-delete
  flag, polled by the SQL connector.

Deterministic (seeded), so reports and tests can name rows. The generators are used by tests and
benchmarks too, to make larger files.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from exchange.rules.checksums import make_citizen_id, make_credit_code

POPULATION_HEADER = [
    "公民身份号码",
    "姓名",
    "性别",
    "出生日期",
    "民族",
    "户籍地址",
    "行政区划代码",
    "联系电话",
]
#: 朔州市 and its districts/counties (GB/T 2260).
REGIONS = ["140602", "140603", "140621", "140622", "140623", "140681"]
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰春梅海燕"
_STREETS = ["开发路", "民福街", "张辽路", "文远路", "北旺庄街", "鄯阳街", "马邑路", "七里河街"]
_ETHNIC = ["汉族", "汉族", "汉族", "汉族", "回族", "蒙古族", "满族"]
#: Row number (header = 1) -> why that sample row is bad.
BAD_POPULATION_ROWS = {
    4: "citizen ID check digit wrong",
    7: "name empty",
    9: "birth date 1990年13月5日 does not exist",
    12: "phone 1380013 too short",
    15: "region code 14060 has 5 digits",
}


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


def _date_text(day: dt.date, style: int) -> str:
    if style == 0:
        return f"{day.year}年{day.month}月{day.day}日"
    if style == 1:
        return f"{day.year}/{day.month}/{day.day}"
    return f"{day:%Y%m%d}"


def population_rows(count: int, seed: int = 1406, first_sequence: int = 0) -> Iterator[list[str]]:
    """Valid population rows in the CSV layout (values as a department export writes them)."""
    rng = random.Random(seed)
    for n in range(first_sequence, first_sequence + count):
        # (region, birth date, sequence) is unique per n, so every generated ID is distinct.
        region, j = REGIONS[n % len(REGIONS)], n // len(REGIONS)
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=(j // 500 + j % 500 * 61) % 30000)
        gender = rng.choice(["男", "女"])
        # The sequence's last digit is odd for men, even for women (GB 11643).
        sequence = j % 500 * 2 + (1 if gender == "男" else 0)
        citizen_id = make_citizen_id(region, birth, sequence)
        i = n - first_sequence
        yield [
            citizen_id,
            _name(rng),
            gender,
            _date_text(birth, i % 3),
            rng.choice(_ETHNIC),
            f"山西省朔州市{rng.choice(_STREETS)}{rng.randint(1, 300)}号",
            region,
            "" if i % 4 == 0 else f"1{rng.randint(3, 9)}{rng.randint(0, 999_999_999):09d}",
        ]


def write_population_csv(
    path: Path,
    count: int,
    *,
    encoding: str = "gbk",
    bad_rows: bool = False,
    seed: int = 1406,
    first_sequence: int = 0,
) -> list[list[str]]:
    """A population export; with ``bad_rows``, the rows of ``BAD_POPULATION_ROWS`` are broken.
    Returns the rows written (without the header)."""
    rows = list(population_rows(count, seed, first_sequence))
    if bad_rows:
        rows[4 - 2][0] = rows[4 - 2][0][:17] + ("0" if rows[4 - 2][0][17] != "0" else "1")
        rows[7 - 2][1] = ""
        rows[9 - 2][3] = "1990年13月5日"
        rows[12 - 2][7] = "1380013"
        rows[15 - 2][6] = "14060"
    write_population_rows(path, rows, encoding)
    return rows


def write_population_rows(path: Path, rows: list[list[str]], encoding: str) -> None:
    """Population rows as an export: the header, then the rows, in ``encoding``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(POPULATION_HEADER)
        writer.writerows(rows)


LEGAL_ENTITY_HEADER = [
    "统一社会信用代码",
    "企业名称",
    "法定代表人",
    "企业类型",
    "注册资本(元)",
    "成立日期",
    "登记状态",
    "住所",
    "行政区划代码",
]
_TRADES = ["煤业", "能源", "农牧", "建材", "物流", "商贸", "陶瓷", "食品"]
_TYPES = ["有限责任公司", "股份有限公司", "个人独资企业", "农民专业合作社"]


def legal_entity_rows(count: int, seed: int = 1407) -> list[list[object]]:
    rng = random.Random(seed)
    rows: list[list[object]] = []
    for i in range(count):
        region = REGIONS[i % len(REGIONS)]
        code = make_credit_code(f"91{region}MA0{i:04d}{rng.randint(100, 999)}"[:17])
        capital = rng.randint(10, 50_000) * 10_000
        rows.append(
            [
                code,
                f"朔州市{rng.choice(['平鲁', '朔城', '怀仁', '山阴', '应县', '右玉'])}"
                f"{rng.choice(_TRADES)}有限公司",
                _name(rng),
                rng.choice(_TYPES),
                f"{capital:,.2f}",
                dt.datetime(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 9000)),
                rng.choice(["存续", "存续", "在业", "注销"]),
                f"山西省朔州市{rng.choice(_STREETS)}{rng.randint(1, 300)}号",
                region,
            ]
        )
    return rows


def write_legal_entities_xlsx(path: Path, count: int = 12) -> list[list[object]]:
    from openpyxl import Workbook

    rows = legal_entity_rows(count)
    rows[5][0] = str(rows[5][0])[:17] + "X"  # a credit code with a wrong check character
    book = Workbook()
    sheet = book.active
    sheet.title = "法人登记"
    sheet.append(LEGAL_ENTITY_HEADER)
    for row in rows:
        sheet.append(row)
    for cell in sheet["F"][1:]:
        cell.number_format = "yyyy/m/d"
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return rows


def write_social_insurance_db(path: Path, count: int = 20) -> None:
    rng = random.Random(1408)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    with db:
        db.execute(
            """CREATE TABLE si_enrolment (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 enrolment_no TEXT NOT NULL UNIQUE,
                 sfzh TEXT NOT NULL,
                 xm TEXT NOT NULL,
                 xzlx TEXT NOT NULL,
                 dwtyxydm TEXT,
                 cbrq TEXT NOT NULL,
                 cbzt TEXT NOT NULL,
                 jfjs NUMERIC,
                 xzqh TEXT NOT NULL,
                 updated_at TEXT NOT NULL,
                 is_deleted INTEGER NOT NULL DEFAULT 0
               )"""
        )
        people = list(population_rows(count, seed=1409))
        employers = legal_entity_rows(5)
        for i, person in enumerate(people):
            db.execute(
                "INSERT INTO si_enrolment (enrolment_no, sfzh, xm, xzlx, dwtyxydm, cbrq, cbzt,"
                " jfjs, xzqh, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    f"SI{140600 + i:08d}",
                    person[0],
                    person[1],
                    rng.choice(["110", "210", "310", "410", "510"]),
                    employers[i % 5][0],
                    f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-01",
                    rng.choice(["参保缴费", "暂停缴费"]),
                    f"{rng.randint(3000, 15000)}.00",
                    person[6],
                    f"2026-11-0{1 + i % 9} 0{i % 10}:00:00",
                ),
            )
    db.close()


def marriage_registrations(count: int = 3) -> list[dict[str, str]]:
    """Registrations as the marriage system pushes them over HTTP (JSON, field names)."""
    men = [p for p in population_rows(40, seed=1410) if p[2] == "男"]
    women = [p for p in population_rows(40, seed=1410) if p[2] == "女"]
    return [
        {
            "registration_no": f"J140600-2026-{i + 1:06d}",
            "registration_type": "IA",
            "male_citizen_id": men[i][0],
            "male_name": men[i][1],
            "female_citizen_id": women[i][0],
            "female_name": women[i][1],
            "registration_date": f"2026年11月{20 + i}日",
            "registry_office": "朔州市民政局婚姻登记处",
            "region_code": men[i][6],
        }
        for i in range(count)
    ]


def write_marriage_batches(folder: Path) -> None:
    """``registrations.json`` (a valid batch) and ``bad-batch.json`` (one record is wrong)."""
    good = marriage_registrations(3)
    bad = [dict(good[0], registration_no="J140600-2026-000099"), dict(good[1])]
    bad[1].update(registration_no="J140600-2026-000098", male_citizen_id="140602199001011230")
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in (("registrations.json", good), ("bad-batch.json", bad)):
        (folder / name).write_text(json.dumps(batch, ensure_ascii=False, indent=2), "utf-8")


def main(out: Path) -> None:
    write_population_csv(out / "gongan" / "population.csv", 40, bad_rows=True)
    write_legal_entities_xlsx(out / "scjg" / "legal_entities.xlsx")
    write_social_insurance_db(out / "rsj" / "social_insurance.db")
    write_marriage_batches(out / "mzj")
    print(f"sample data written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
