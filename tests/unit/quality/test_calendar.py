"""Working-day deadlines: weekends, 法定节假日 and 调休 counted as the plans count them."""

from __future__ import annotations

import datetime as dt

import pytest

from exchange.quality.calendar import Deadline, WorkCalendar, parse_deadline, step_deadlines

CST = dt.timezone(dt.timedelta(hours=8))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5 working days", Deadline(5, True)),
        ("1 workday", Deadline(1, True)),
        ("2 days", Deadline(172_800, False)),
        ("8 hours", Deadline(28_800, False)),
        ("30 seconds", Deadline(30, False)),
        ("1.5 s", Deadline(1.5, False)),
    ],
)
def test_deadlines_are_read(text: str, expected: Deadline) -> None:
    assert parse_deadline(text) == expected


@pytest.mark.parametrize("text", ["five days", "5", "2.5 working days", "-1 days", "3 weeks"])
def test_a_bad_deadline_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"working days|whole days"):
        parse_deadline(text)


def test_five_working_days_skip_the_weekend() -> None:
    friday = dt.datetime(2026, 12, 4, 15, 0, tzinfo=CST)
    due = WorkCalendar().due(friday, Deadline(5, True))
    assert due.astimezone(CST) == dt.datetime(2026, 12, 11, 15, 0, tzinfo=CST)


def test_holidays_are_skipped_and_make_up_days_count() -> None:
    # 2026 National Day: 1-7 October off, Saturday 10 October a working day (调休).
    holidays = [dt.date(2026, 10, d) for d in range(1, 8)]
    cal = WorkCalendar(holidays=holidays, workdays=[dt.date(2026, 10, 10)])
    start = dt.datetime(2026, 9, 30, 10, 0, tzinfo=CST)
    # 8 Oct (Thu), 9 Oct (Fri), 10 Oct (Sat, worked)
    assert cal.due(start, Deadline(3, True)).astimezone(CST) == dt.datetime(
        2026, 10, 10, 10, 0, tzinfo=CST
    )


def test_a_step_begun_on_a_holiday_counts_from_the_next_working_day() -> None:
    saturday = dt.datetime(2026, 12, 5, 22, 0, tzinfo=CST)
    due = WorkCalendar().due(saturday, Deadline(1, True))
    assert due.astimezone(CST) == dt.datetime(2026, 12, 8, 0, 0, tzinfo=CST)


def test_working_days_are_judged_in_the_platforms_zone() -> None:
    # Sunday 23:30 UTC is Monday 07:30 in Beijing: a working day there.
    sunday_utc = dt.datetime(2026, 12, 6, 23, 30, tzinfo=dt.UTC)
    due = WorkCalendar().due(sunday_utc, Deadline(1, True))
    assert due == dt.datetime(2026, 12, 7, 23, 30, tzinfo=dt.UTC)


def test_step_deadlines_per_state() -> None:
    due = step_deadlines({"filed": "2 working days", "fixed": "10 seconds"})
    at = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)
    assert due("filed", at) == dt.datetime(2026, 12, 9, 2, 0, tzinfo=dt.UTC)
    assert due("fixed", at) == at + dt.timedelta(seconds=10)
    assert due("confirmed", at) is None
