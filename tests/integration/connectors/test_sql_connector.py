"""SQL table polling against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.config import load_connector_config
from connectors.errors import SourceError
from connectors.runner import Connector, check
from samples.generate import population_rows
from tests.integration.connectors.conftest import ConnectorEnv

FIELDS = {
    "citizen_id": "sfzh",
    "name": "xm",
    "gender": "xb",
    "birth_date": "csrq",
    "region_code": "xzqh",
}


def make_table(engine: sa.Engine, name: str) -> sa.Table:
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sfzh", sa.String(18), nullable=False),
        sa.Column("xm", sa.String(50)),
        sa.Column("xb", sa.String(1)),
        sa.Column("csrq", sa.Date),
        sa.Column("xzqh", sa.String(6)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    )
    table.create(engine)
    return table


INCREMENTING = {"type": "sql", "table": "people", "mode": "incrementing", "id_column": "id"}


def insert_people(engine: sa.Engine, table: sa.Table, people: list[list[str]]) -> None:
    rows = [
        {
            "sfzh": p[0],
            "xm": p[1],
            "xb": "1",
            "csrq": dt.date(1990, 1, 1),
            "xzqh": p[6],
            "updated_at": dt.datetime(2026, 1, 1),
        }
        for p in people
    ]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dept.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def test_polling_picks_up_inserts_updates_and_soft_deletes(
    env: ConnectorEnv, database: str
) -> None:
    engine = sa.create_engine(database)
    table = make_table(engine, f"people_{env.uid}")
    people = list(population_rows(5))
    t0 = dt.datetime(2026, 11, 1, 8, 0, 0)

    def person(i: int, **changes: object) -> dict[str, object]:
        p = people[i]
        row = {
            "sfzh": p[0],
            "xm": p[1],
            "xb": "1" if p[2] == "男" else "2",
            "csrq": dt.date(1980, 1, 1 + i),
            "xzqh": p[6],
            "updated_at": t0,
            "deleted": False,
        }
        return {**row, **changes}

    with engine.begin() as conn:
        conn.execute(table.insert(), [person(i) for i in range(3)])  # same update time: ties
    path = env.connector_file(
        {
            "type": "sql",
            "url": database,
            "table": str(table.name),
            "mode": "timestamp+incrementing",
            "id_column": "id",
            "updated_column": "updated_at",
            "soft_delete": {"column": "deleted"},
            "batch_size": 2,  # several batches per poll
        },
        FIELDS,
    )
    Connector(env.settings, load_connector_config(path)).run(once=True)
    first = env.changes()
    assert {c.key for c in first} == {people[i][0] for i in range(3)}
    assert {c.value["op"] for c in first if c.value} == {"u"}

    later = t0 + dt.timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(table.insert(), [person(3, updated_at=later), person(4, updated_at=later)])
        conn.execute(
            table.update().where(table.c.sfzh == people[0][0]).values(xm="改名", updated_at=later)
        )
        conn.execute(
            table.update()
            .where(table.c.sfzh == people[1][0])
            .values(deleted=True, updated_at=later)
        )
    Connector(env.settings, load_connector_config(path)).run(once=True)
    changes = env.changes()
    # One key lives in one partition, in order: the last record per key is its current state.
    latest = {c.key: c.value for c in changes if c.value is not None}
    counts = Counter(c.key for c in changes if c.value is not None)
    assert counts == {
        people[0][0]: 2,
        people[1][0]: 2,
        people[2][0]: 1,
        people[3][0]: 1,
        people[4][0]: 1,
    }, "2 new rows, 1 update, 1 delete"
    assert latest[people[0][0]]["after"]["name"] == "改名"  # type: ignore[index]
    assert latest[people[1][0]]["op"] == "d"  # type: ignore[index]
    assert latest[people[1][0]]["after"] is None  # type: ignore[index]
    assert latest[people[3][0]]["after"]["birth_date"] == dt.date(1980, 1, 4)  # type: ignore[index]
    tombstones = [c.key for c in changes if c.value is None]
    assert tombstones == [people[1][0]]

    Connector(env.settings, load_connector_config(path)).run(once=True)
    assert len(env.changes()) == len(changes), "nothing new: nothing published"
    saved = env.saved()
    assert saved is not None and saved["id"] >= 1


def test_incrementing_mode_and_a_missing_column(env: ConnectorEnv, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dept.db'}"
    engine = sa.create_engine(url)
    insert_people(engine, make_table(engine, "people"), list(population_rows(4)))
    source = INCREMENTING | {"url": url}
    path = env.connector_file(source, FIELDS)
    Connector(env.settings, load_connector_config(path)).run(once=True)
    assert [c.value["op"] for c in env.changes() if c.value] == ["c"] * 4

    bad = env.connector_file(source, {**FIELDS, "phone": "dh"}, name="bad.yaml")
    with pytest.raises(SourceError, match=r"no column.*dh"):
        Connector(env.settings, load_connector_config(bad))


def sqlite_people(tmp_path: Path, count: int, *updates: str) -> tuple[str, list[list[str]]]:
    """A SQLite table of ``count`` people, then ``updates`` (SQL) run on it."""
    url = f"sqlite:///{tmp_path / 'dept.db'}"
    engine = sa.create_engine(url)
    people = list(population_rows(count))
    insert_people(engine, make_table(engine, "people"), people)
    with engine.begin() as conn:
        for update in updates:
            conn.execute(sa.text(update))
    return url, people


def published_ids(env: ConnectorEnv) -> list[str]:
    return [c.value["after"]["citizen_id"] for c in env.changes() if c.value]


def test_a_value_sqlite_holds_as_bytes_is_one_rejected_row(
    env: ConnectorEnv, tmp_path: Path
) -> None:
    # SQLite does not check that TEXT is UTF-8: a legacy system may have written GBK bytes.
    gbk = "张三".encode("gbk").hex()
    url, people = sqlite_people(
        tmp_path,
        4,
        f"UPDATE people SET xm = CAST(X'{gbk}' AS TEXT) WHERE id = 2",
        "UPDATE people SET xm = X'616263' WHERE id = 3",  # a BLOB
    )
    path = env.connector_file(INCREMENTING | {"url": url}, FIELDS)
    Connector(env.settings, load_connector_config(path)).run(once=True)

    assert published_ids(env) == [people[0][0], people[3][0]]
    letters = sorted(env.dead_letters(), key=lambda d: d["position"])
    assert [(d["position"], d["reason"]) for d in letters] == [
        ("people:id=2", "unreadable"),
        ("people:id=3", "unreadable"),
    ]
    (text_error,), (blob_error,) = letters[0]["errors"], letters[1]["errors"]
    assert text_error["field"] == "name" and "not UTF-8 text" in text_error["message"]
    assert blob_error["field"] == "name" and "a binary value" in blob_error["message"]
    assert env.saved() == {"id": 4}


def test_a_position_that_is_not_text_stops_the_connector_after_the_rows_before_it(
    env: ConnectorEnv, tmp_path: Path
) -> None:
    # The bytes sort after every real time, so rows 1 and 3 come first.
    url, people = sqlite_people(
        tmp_path, 3, "UPDATE people SET updated_at = CAST(X'ff' AS TEXT) WHERE id = 2"
    )
    source = {"type": "sql", "url": url, "table": "people", "mode": "timestamp+incrementing"}
    source |= {"id_column": "id", "updated_column": "updated_at"}
    path = env.connector_file(source, FIELDS)

    with pytest.raises(SourceError, match=r"table people: a row's updated_at is b'\\xff', not"):
        Connector(env.settings, load_connector_config(path)).run(once=True)
    assert published_ids(env) == [people[0][0], people[2][0]]
    assert env.saved() == {"id": 3, "updated": "2026-01-01 00:00:00.000000"}


def test_rows_without_an_id_are_left_out_and_named_by_check(
    env: ConnectorEnv, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'dept.db'}"
    engine = sa.create_engine(url)
    people = list(population_rows(3))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE people (id INTEGER, sfzh TEXT, xm TEXT, xb TEXT, "
                "csrq TEXT, xzqh TEXT, updated_at TEXT)"
            )
        )
        for i, p in zip((1, None, 2), people, strict=True):
            conn.execute(
                sa.text(
                    "INSERT INTO people VALUES (:id, :sfzh, :xm, '1', '1990-01-01', :xzqh, "
                    "'2026-01-01')"
                ),
                {"id": i, "sfzh": p[0], "xm": p[1], "xzqh": p[6]},
            )
    path = env.connector_file(INCREMENTING | {"url": url, "batch_size": 1}, FIELDS)
    config = load_connector_config(path)
    result = check(env.settings, config)
    assert "1 row(s) of people have no id and are never published" in "\n".join(result.facts)
    # Before, the row without an id reset the cursor to the start: --once never ended.
    Connector(env.settings, config).run(once=True)
    assert published_ids(env) == [people[0][0], people[2][0]]
    assert env.saved() == {"id": 2}
