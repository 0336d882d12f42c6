"""The file-drop connector against the real broker and registry."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from collections import Counter
from pathlib import Path

import pytest

from connectors.errors import ConnectorError
from connectors.runner import Connector, check
from samples.generate import (
    BAD_POPULATION_ROWS,
    POPULATION_HEADER,
    population_rows,
    write_legal_entities_xlsx,
    write_population_csv,
    write_population_rows,
)
from tests.conftest import ROOT
from tests.integration.connectors.conftest import POPULATION_FIELDS, ConnectorEnv


def run_once(env: ConnectorEnv, **source: object) -> Connector:
    connector = Connector(env.settings, env.file_config(**source))
    connector.run(once=True)
    return connector


def report_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("workers", [0, 2])
def test_gbk_sample_with_bad_rows_publishes_the_good_and_reports_every_bad_one(
    env: ConnectorEnv, workers: int
) -> None:
    shutil.copy(ROOT / "samples/data/gongan/population.csv", env.inbox / "population.csv")
    config = env.file_config(mode="snapshot")
    config = config.model_copy(
        update={"publish": config.publish.model_copy(update={"workers": workers})}
    )
    Connector(env.settings, config).run(once=True)

    changes = env.changes()
    assert len(changes) == 40 - len(BAD_POPULATION_ROWS)
    assert {c.value["op"] for c in changes if c.value} == {"r"}
    rows = list(csv.reader((ROOT / "samples/data/gongan/population.csv").open(encoding="gbk")))
    by_key = {c.key: c.value for c in changes}
    first = rows[1]
    after = by_key[first[0]]["after"]  # type: ignore[index]
    assert after["name"] == first[1] and after["address"] == first[5]  # Chinese text intact
    assert after["gender"] in ("1", "2")
    assert (env.inbox / "done" / "population.csv").exists()
    assert not (env.inbox / "population.csv").exists()

    report = report_rows(env.inbox / "done" / "population.csv.report.csv")
    rejected = {int(r["row"]): r for r in report if r["row"]}
    assert set(rejected) == set(BAD_POPULATION_ROWS)
    assert rejected[4]["reason"] == "citizen_id" and "check character" in rejected[4]["message"]
    assert rejected[7]["field"] == "name" and rejected[7]["reason"] == "required"
    assert rejected[9]["field"] == "birth_date" and "1990年13月5日" in rejected[9]["message"]
    assert rejected[12]["field"] == "phone"
    assert rejected[15]["field"] == "region_code"

    letters = env.dead_letters()
    assert sorted(int(d["position"].split("#")[1]) for d in letters) == sorted(BAD_POPULATION_ROWS)
    assert all(d["reason"] and d["errors"] and d["entry"] == env.project.entry_id for d in letters)
    name_row = next(d for d in letters if d["position"].endswith("#7"))
    assert name_row["reason"] == "required" and name_row["data"]["公民身份号码"] == rows[6][0]


def test_gb18030_and_utf8_files_decode_including_characters_outside_gbk(
    env: ConnectorEnv,
) -> None:
    rows = write_population_csv(env.inbox / "a.csv", 5, encoding="gb18030")
    rows[0][1] = "王䶮"  # U+4DAE: GB18030 only
    rows[1][5] = "山西省朔州市𠀀街1号"  # U+20000: a 4-byte GB18030 sequence
    write_population_rows(env.inbox / "a.csv", rows, "gb18030")
    more = write_population_csv(env.inbox / "x", 3, first_sequence=1000)
    write_population_rows(env.inbox / "b.csv", more, "utf-8")
    (env.inbox / "x").unlink()
    run_once(env)
    after = {c.key: c.value["after"] for c in env.changes() if c.value}
    assert after[rows[0][0]]["name"] == "王䶮"
    assert after[rows[1][0]]["address"] == "山西省朔州市𠀀街1号"
    assert len(after) == 8


def test_xlsx_export_with_date_cells_and_amounts(env: ConnectorEnv) -> None:
    # The population entry read from an XLSX sheet: dates as date cells, Chinese text.
    from openpyxl import Workbook

    rows = write_population_csv(env.project.root / "p.csv", 6)
    book = Workbook()
    sheet = book.active
    sheet.title = "人口"
    sheet.append(list(POPULATION_FIELDS_COLUMNS))
    for row in rows:
        born = dt.datetime(1980, 1, 2)
        sheet.append([*row[:3], born, *row[4:]])
    book.save(env.inbox / "people.xlsx")
    run_once(env, sheet="人口")
    after = {c.key: c.value["after"] for c in env.changes() if c.value}
    assert len(after) == 6
    assert after[rows[2][0]]["name"] == rows[2][1]
    assert after[rows[2][0]]["birth_date"] == dt.date(1980, 1, 2)
    assert (env.inbox / "done" / "people.xlsx").exists()


POPULATION_FIELDS_COLUMNS = [
    v if isinstance(v, str) else v["column"] for v in POPULATION_FIELDS.values()
]


def test_sample_legal_entity_xlsx_decodes(tmp_path: Path) -> None:
    from connectors.sources.tabular import read_rows, scan

    path = tmp_path / "le.xlsx"
    written = write_legal_entities_xlsx(path)
    rows = list(
        read_rows(path, scan(path, "auto"), ["企业名称", "成立日期"], delimiter=",", sheet=None)
    )
    assert [r[1][0] for r in rows] == [w[1] for w in written]
    assert isinstance(rows[0][1][1], dt.datetime)


def test_full_exports_turn_missing_keys_into_deletes_with_tombstones(env: ConnectorEnv) -> None:
    rows = write_population_csv(env.inbox / "day1.csv", 10)
    run_once(env, mode="snapshot", delete_missing=True)
    kept = rows[:7]
    write_population_rows(env.inbox / "day2.csv", kept, "gbk")
    run_once(env, mode="snapshot", delete_missing=True)
    changes = env.changes()
    deleted = {c.key for c in changes if c.value and c.value["op"] == "d"}
    assert deleted == {r[0] for r in rows[7:]}
    tombstones = {c.key for c in changes if c.value is None}
    assert tombstones == deleted
    assert all(c.value["after"] is None for c in changes if c.value and c.value["op"] == "d")


def test_a_file_that_cannot_be_decoded_goes_to_failed_with_a_report(env: ConnectorEnv) -> None:
    (env.inbox / "broken.csv").write_bytes("公民身份号码\n".encode("gbk") + b"\xff\xff\n")
    run_once(env, encoding="gbk")
    assert (env.inbox / "failed" / "broken.csv").exists()
    report = report_rows(env.inbox / "failed" / "broken.csv.report.csv")
    assert "cannot decode as gbk" in report[0]["message"]
    assert env.changes() == []


def test_a_connector_of_another_department_is_refused(env: ConnectorEnv) -> None:
    path = env.connector_file(
        {"type": "file", "folder": str(env.inbox)}, POPULATION_FIELDS, department="gongan"
    )
    from connectors.config import load_connector_config

    with pytest.raises(ConnectorError) as caught:
        check(env.settings, load_connector_config(path))
    assert caught.value.code == "NOT_PROVIDER"
    assert f"provided by '{env.uid}'" in str(caught.value)
    assert str(caught.value).startswith(f"{path}: entry: refused")


def test_a_connector_for_an_entry_not_in_the_catalog_names_file_and_setting(
    env: ConnectorEnv,
) -> None:
    path = env.connector_file(
        {"type": "file", "folder": str(env.inbox)}, POPULATION_FIELDS, entry="nosuch.entry"
    )
    from connectors.config import load_connector_config

    with pytest.raises(ConnectorError) as caught:
        check(env.settings, load_connector_config(path))
    assert caught.value.code == "UNKNOWN_ENTRY"
    assert str(caught.value).startswith(f"{path}: entry: entry 'nosuch.entry' is not in")


def test_check_shows_rows_and_publishes_nothing(env: ConnectorEnv) -> None:
    shutil.copy(ROOT / "samples/data/gongan/population.csv", env.inbox / "population.csv")
    result = check(env.settings, env.file_config(), limit=5)
    assert [p.position for p in result.preview] == [f"population.csv#{n}" for n in range(2, 7)]
    assert [bool(p.errors) for p in result.preview] == [False, False, True, False, False]
    assert env.changes() == [] and (env.inbox / "population.csv").exists()


def test_a_hundred_thousand_rows_are_published_completely(env: ConnectorEnv) -> None:
    rows = write_population_csv(env.inbox / "big.csv", 100_000, encoding="gbk")
    connector = run_once(env, mode="snapshot")
    changes = env.changes()
    assert len(changes) == 100_000
    assert Counter(c.key for c in changes) == Counter(r[0] for r in rows)
    by_key = {c.key: c.value for c in changes}
    for row in rows[::997]:
        after = by_key[row[0]]["after"]  # type: ignore[index]
        assert (after["name"], after["address"], after["region_code"]) == (row[1], row[5], row[6])
        assert after["phone"] == (row[7] or None)
    assert len({c.value["event_id"] for c in changes if c.value}) == 100_000
    saved = env.saved()
    assert saved is not None and saved["complete"] and saved["row"] == 100_001
    assert connector.source.reports[-1].published == 100_000  # type: ignore[attr-defined]


def test_cli_refuses_another_departments_entry(env: ConnectorEnv) -> None:
    from typer.testing import CliRunner

    from exchange.cli.main import app

    path = env.connector_file(
        {"type": "file", "folder": str(env.inbox)}, POPULATION_FIELDS, department="gongan"
    )
    result = CliRunner().invoke(
        app, ["--config", str(env.project.exchange_yaml), "connector", "check", str(path)]
    )
    assert result.exit_code == 1
    assert "refused" in result.output and "provided by" in result.output


def test_once_waits_for_a_file_still_settling(env: ConnectorEnv) -> None:
    write_population_csv(env.inbox / "fresh.csv", 3)  # modified just now
    run_once(env, settle_s=1)
    assert (env.inbox / "done" / "fresh.csv").exists()
    assert len(env.changes()) == 3


def test_a_row_too_large_for_kafka_is_reported_and_the_rest_published(
    env: ConnectorEnv,
) -> None:
    rows = list(population_rows(3))
    rows[1][5] = "址" * 400_000  # 1.2 MB of UTF-8 in one address cell
    write_population_rows(env.inbox / "big.csv", rows, "utf-8")
    connector = run_once(env)
    assert {c.key for c in env.changes()} == {rows[0][0], rows[2][0]}
    (report,) = report_rows(env.inbox / "done" / "big.csv.report.csv")
    assert (report["row"], report["reason"]) == ("3", "too_large")
    assert "more than the" in report["message"]
    (letter,) = env.dead_letters()
    assert letter["reason"] == "too_large" and letter["truncated"] is True
    assert letter["data"]["户籍地址"].endswith("[cut: 400,000 characters in all]")
    assert connector.publisher.sent_changes == 2


def deletes_of(env: ConnectorEnv) -> set[str]:
    return {c.key for c in env.changes() if c.value and c.value["op"] == "d"}


def test_deletes_are_held_back_when_an_export_has_rows_without_a_key(env: ConnectorEnv) -> None:
    rows = write_population_csv(env.inbox / "day1.csv", 10)
    run_once(env, mode="snapshot", delete_missing=True)
    # Day 2 lacks rows 8 and 9, and one address has an unquoted comma: its key is unknown.
    ragged = [*rows[:7]]
    ragged[3] = [*ragged[3][:5], "朔州市,开发区", *ragged[3][5:]]
    write_population_rows(env.inbox / "day2.csv", ragged, "gbk")
    run_once(env, mode="snapshot", delete_missing=True)
    assert deletes_of(env) == set()
    report = report_rows(env.inbox / "done" / "day2.csv.report.csv")
    assert [r["reason"] for r in report] == ["malformed", "note"]
    assert "deletes held back: 1 row(s) could not be read" in report[1]["message"]
    # Day 3 is whole again and is compared with day 1, the last export deletes were taken from.
    write_population_rows(env.inbox / "day3.csv", rows[:7], "gbk")
    run_once(env, mode="snapshot", delete_missing=True)
    assert deletes_of(env) == {r[0] for r in rows[7:]}


def test_an_export_that_would_delete_most_keys_is_taken_as_cut_short(env: ConnectorEnv) -> None:
    rows = write_population_csv(env.inbox / "day1.csv", 10)
    run_once(env, mode="snapshot", delete_missing=True)
    write_population_rows(env.inbox / "day2.csv", [], "gbk")  # the header only
    run_once(env, mode="snapshot", delete_missing=True)
    assert deletes_of(env) == set()
    (note,) = report_rows(env.inbox / "done" / "day2.csv.report.csv")
    assert "10 of the 10 keys of done/day1.csv are missing" in note["message"]
    assert "delete_limit (50%)" in note["message"]
    write_population_rows(env.inbox / "day3.csv", rows[:4], "gbk")
    run_once(env, mode="snapshot", delete_missing=True, delete_limit=0.6)
    assert deletes_of(env) == {r[0] for r in rows[4:]}


def test_a_file_unreadable_midway_publishes_the_rows_before_and_goes_to_failed(
    env: ConnectorEnv, tmp_path: Path
) -> None:
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    book.active.append(POPULATION_HEADER)
    rows = list(population_rows(1500))
    for row in rows:
        book.active.append(row)
    whole = tmp_path / "whole.xlsx"
    book.save(whole)
    # The sheet's XML cut in the middle: a transfer broken off, a disk full.
    with zipfile.ZipFile(whole) as src, zipfile.ZipFile(env.inbox / "p.xlsx", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) * 3 // 4]
            dst.writestr(item, data)
    run_once(env)
    published = {c.key for c in env.changes()}
    # Every row read before the break is published (not only whole batches of 1,000).
    assert 1000 < len(published) < 1500
    assert published == {r[0] for r in rows[: len(published)]}
    (note,) = report_rows(env.inbox / "failed" / "p.xlsx.report.csv")
    assert "stopped: p.xlsx: the sheet cannot be read after row" in note["message"]
