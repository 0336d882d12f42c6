"""Deadlines in working days (工作日), as the plans count them.

A step's deadline is written in the settings as ``"5 working days"``, ``"2 days"``,
``"8 hours"`` or ``"30 seconds"``. Working days skip Saturdays, Sundays and the listed public
holidays (法定节假日), and count the weekend days listed as working days (调休上班), judged in
the platform's time zone (UTC+8 for China, which has no daylight saving). Pure: unit-tested
without a clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

__all__ = ["Deadline", "WorkCalendar", "parse_deadline", "step_deadlines"]

_SPEC = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(working days?|workdays?|days?|hours?|minutes?|seconds?|s)\s*$"
)
_UNIT_S = {"day": 86_400.0, "hour": 3_600.0, "minute": 60.0, "second": 1.0, "s": 1.0}


@dataclass(frozen=True)
class Deadline:
    """``amount`` working days (``working``), or a plain duration."""

    amount: float
    working: bool

    def __str__(self) -> str:
        if self.working:
            return f"{self.amount:g} working days"
        return f"{self.amount:g} seconds"


def parse_deadline(text: str) -> Deadline:
    """``"5 working days"`` and the like; :class:`ValueError` says what is accepted."""
    m = _SPEC.match(text.lower())
    if m is None:
        raise ValueError(
            f"{text!r} is not a deadline; write e.g. '5 working days', '2 days', '8 hours' "
            "or '30 seconds'"
        )
    amount, unit = float(m.group(1)), m.group(2)
    if unit.startswith(("working", "workday")):
        if amount != int(amount):
            raise ValueError(f"{text!r}: working days are whole days")
        return Deadline(amount, True)
    return Deadline(amount * _UNIT_S[unit.rstrip("s") or "s"], False)


@dataclass(frozen=True)
class WorkCalendar:
    holidays: Collection[dt.date] = field(default_factory=frozenset)
    #: Weekend days that are working days (调休).
    workdays: Collection[dt.date] = field(default_factory=frozenset)
    utc_offset_hours: float = 8.0

    @property
    def zone(self) -> dt.timezone:
        return dt.timezone(dt.timedelta(hours=self.utc_offset_hours))

    def working(self, day: dt.date) -> bool:
        if day in self.holidays:
            return False
        return day.weekday() < 5 or day in self.workdays

    def due(self, start: dt.datetime, deadline: Deadline) -> dt.datetime:
        """When a step begun at ``start`` is due: ``n`` working days later at the same local
        time (a step begun on a holiday counts from the next working day's start)."""
        if not deadline.working:
            return start + dt.timedelta(seconds=deadline.amount)
        local = start.astimezone(self.zone)
        day = local.date()
        if not self.working(day):
            while not self.working(day):
                day += dt.timedelta(days=1)
            local = dt.datetime.combine(day, dt.time(0), self.zone)
        left = int(deadline.amount)
        while left > 0:
            day += dt.timedelta(days=1)
            if self.working(day):
                left -= 1
        return dt.datetime.combine(day, local.timetz()).astimezone(dt.UTC)


def step_deadlines(
    deadlines: Mapping[str, str],
    holidays: Collection[dt.date] = (),
    workdays: Collection[dt.date] = (),
    utc_offset_hours: float = 8.0,
) -> Callable[[str, dt.datetime], dt.datetime | None]:
    """``due(state, begun_at)`` for ``quality.deadlines`` (``None``: the state has none)."""
    calendar = WorkCalendar(frozenset(holidays), frozenset(workdays), utc_offset_hours)
    parsed = {state: parse_deadline(text) for state, text in deadlines.items()}

    def due(state: str, at: dt.datetime) -> dt.datetime | None:
        deadline = parsed.get(state)
        return None if deadline is None else calendar.due(at, deadline)

    return due
