"""Data quality (issue 23): consumers' objections and their closed loop (``objections.py``,
deadlines in working days ``calendar.py``), and the quality worker that measures each entry from
its streams, finds fixes and escalates missed deadlines (``worker.py``).

This package's face imports nothing from Kafka: the settings and the portal use its models.
"""

from exchange.quality.calendar import Deadline, WorkCalendar, parse_deadline, step_deadlines
from exchange.quality.objections import (
    Objection,
    ObjectionError,
    ObjectionState,
    Step,
    advance,
    fingerprint,
    overdue,
)

__all__ = [
    "Deadline",
    "Objection",
    "ObjectionError",
    "ObjectionState",
    "Step",
    "WorkCalendar",
    "advance",
    "fingerprint",
    "overdue",
    "parse_deadline",
    "step_deadlines",
]
