"""数据质量异议: a consumer's objection to records it received, and its way to a close.

    filed (发现/上报) → investigating (排查) → accepted (a fix is coming) | rejected (reason)
    filed | investigating | accepted → fixed (纠错: found by the exchange itself, when a new
        version of the key changes the objected fields, ``quality/fixes.py``)
    fixed | rejected → confirmed (确认) by the consumer, or reopened (→ filed, a new round)

Every step says who and when; each state but ``confirmed`` has a deadline
(``quality.deadlines``, working days), and a step left past it is escalated to the platform
operators once. Objections live as JSON on the compacted ``topics.objections``, keyed by id;
every step is an audit event written with it. :func:`advance` is the whole state machine: pure,
unit-tested without Kafka.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exchange.errors import ExchangeError

__all__ = [
    "ACTIONS",
    "FINAL",
    "STATES",
    "WAITING_FOR_PROVIDER",
    "Action",
    "Located",
    "Objection",
    "ObjectionError",
    "ObjectionState",
    "Side",
    "Step",
    "advance",
    "audit_details",
    "event_kind",
    "fingerprint",
    "overdue",
]

ObjectionState = Literal["filed", "investigating", "accepted", "rejected", "fixed", "confirmed"]
STATES: tuple[ObjectionState, ...] = (
    "filed",
    "investigating",
    "accepted",
    "rejected",
    "fixed",
    "confirmed",
)
#: The provider's move (its fix is looked for in these).
WAITING_FOR_PROVIDER: frozenset[ObjectionState] = frozenset({"filed", "investigating", "accepted"})
FINAL: frozenset[ObjectionState] = frozenset({"confirmed"})
Action = Literal["investigate", "accept", "reject", "fix", "confirm", "reopen"]
ACTIONS: tuple[Action, ...] = ("investigate", "accept", "reject", "fix", "confirm", "reopen")
#: Who acts: the entry's provider, the grant's consumer, or the exchange itself (fixes).
Side = Literal["provider", "consumer", "exchange"]

#: action -> (who may take it, the states it is taken from, the state it leads to)
_MOVES: dict[Action, tuple[Side, frozenset[ObjectionState], ObjectionState]] = {
    "investigate": ("provider", frozenset({"filed"}), "investigating"),
    "accept": ("provider", frozenset({"filed", "investigating"}), "accepted"),
    "reject": ("provider", frozenset({"filed", "investigating"}), "rejected"),
    "fix": ("exchange", WAITING_FOR_PROVIDER, "fixed"),
    "confirm": ("consumer", frozenset({"fixed", "rejected"}), "confirmed"),
    "reopen": ("consumer", frozenset({"fixed", "rejected"}), "filed"),
}
#: Actions that need a reason.
_REASONED: frozenset[Action] = frozenset({"reject", "reopen"})


class ObjectionError(ExchangeError):
    """An action the objection's state or the actor's side does not allow; ``refusal`` is
    ``"forbidden"``, ``"conflict"`` or ``"bad_request"`` (the portal answers 403/409/422)."""

    def __init__(self, message: str, *, code: str, refusal: str) -> None:
        super().__init__(message, code=code)
        self.refusal = refusal


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class Step(_Model):
    state: ObjectionState
    at: dt.datetime
    #: An account (``dept/user``), a token (``token:<id>``) or ``exchange``.
    by: str
    note: str = ""


class Located(_Model):
    """The objected version as the exchange found it in the source (never shown to the
    consumer: source positions are the router's secret, ``routing/transform.py``)."""

    partition: int
    offset: int
    #: :func:`fingerprint` of the objected fields' values in that version.
    fingerprint: str
    #: The record's source key, hex (its later versions are watched by it); empty when the
    #: key was not found in the source.
    source_key: str = ""


class Objection(_Model):
    id: str
    grant_id: str
    entry: str
    provider: str
    consumer: str
    #: The record's key as the consumer received it (the business key, or its salted hash).
    key: str = Field(..., min_length=1, max_length=512)
    #: The delivered ``event_id`` of the version objected to, if the consumer gave it.
    event: str | None = Field(None, max_length=128)
    fields: tuple[str, ...] = Field(..., min_length=1, max_length=64)
    #: What is wrong, in the consumer's words.
    problem: str = Field(..., min_length=2, max_length=2000)
    evidence: str = Field("", max_length=4000)
    state: ObjectionState = "filed"
    #: 1, then one more each time it is reopened.
    round: int = Field(1, ge=1)
    history: tuple[Step, ...]
    #: When the current step is due (``None``: no deadline).
    due_at: dt.datetime | None = None
    #: When the current step was escalated to the operators (once per step).
    escalated_at: dt.datetime | None = None
    located: Located | None = None

    @field_validator("fields")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("names a field twice")
        return value

    @property
    def filed_at(self) -> dt.datetime:
        return self.history[0].at

    @property
    def since(self) -> dt.datetime:
        """When the current round began (filed, or last reopened)."""
        return next(s.at for s in reversed(self.history) if s.state == "filed")

    @property
    def resolved_at(self) -> dt.datetime | None:
        """When it was last confirmed (``None`` while open)."""
        return self.history[-1].at if self.state == "confirmed" else None

    @property
    def answered_at(self) -> dt.datetime | None:
        """When the provider's side last settled it (fixed or rejected), if it stands settled
        (``None`` while waiting for the provider). The provider's figures count this, not the
        consumer's confirmation: a consumer that never confirms does not lower them."""
        if self.state in WAITING_FOR_PROVIDER:
            return None
        return next(
            (s.at for s in reversed(self.history) if s.state in ("fixed", "rejected")), None
        )

    @classmethod
    def decode(cls, value: bytes) -> Objection:
        return cls.model_validate_json(value)


def advance(
    objection: Objection,
    action: str,
    side: Side,
    by: str,
    at: dt.datetime,
    due: Callable[[ObjectionState, dt.datetime], dt.datetime | None],
    note: str = "",
    max_rounds: int = 5,
) -> Objection:
    """The objection after ``action`` by ``side``, or :class:`ObjectionError` saying why not.
    ``due(state, at)`` is the deadline of a step begun at ``at`` (``quality.deadlines``)."""
    if action not in _MOVES:
        raise ObjectionError(
            f"action: one of {', '.join(ACTIONS)}, not {action!r}",
            code="BAD_ACTION",
            refusal="bad_request",
        )
    who, sources, target = _MOVES[action]
    if side != who:
        raise ObjectionError(
            f"only the {who} may {action} an objection", code="NOT_YOURS", refusal="forbidden"
        )
    if objection.state not in sources:
        raise ObjectionError(
            f"objection {objection.id} is {objection.state}; {action} needs it "
            f"{' or '.join(sorted(sources))}",
            code="WRONG_STATE",
            refusal="conflict",
        )
    note = note.strip()
    if action in _REASONED and not note:
        raise ObjectionError(
            f"{action} needs its reason", code="REASON_REQUIRED", refusal="bad_request"
        )
    if action == "reopen" and objection.round >= max_rounds:
        raise ObjectionError(
            f"{objection.id} was reopened {objection.round - 1} times already: ask the "
            "platform operators to settle it",
            code="TOO_MANY_ROUNDS",
            refusal="conflict",
        )
    update: dict[str, Any] = {
        "state": target,
        "history": (*objection.history, Step(state=target, at=at, by=by, note=note)),
        "due_at": due(target, at),
        "escalated_at": None,
    }
    if action == "reopen":
        # A new round is about the version current now: the exchange locates it again.
        update |= {"round": objection.round + 1, "located": None}
    return objection.model_copy(update=update)


def overdue(objection: Objection, now: dt.datetime) -> bool:
    """Past its step's deadline and not yet escalated for that step."""
    return (
        objection.state not in FINAL
        and objection.due_at is not None
        and objection.escalated_at is None
        and now >= objection.due_at
    )


def fingerprint(after: Mapping[str, Any] | None, fields: Sequence[str]) -> str:
    """The objected fields' values in one version, as a digest (``None``: deleted). Two
    versions with the same digest did not change those fields."""
    if after is None:
        return "deleted"
    values = [after.get(f) for f in fields]
    raw = json.dumps(values, default=str, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


_EVENT = {
    "investigate": "investigating",
    "accept": "accepted",
    "reject": "rejected",
    "fix": "fixed",
    "confirm": "confirmed",
    "reopen": "reopened",
}


def event_kind(action: str) -> str:
    """The audit kind of a step: ``quality.objection.<what it became>``."""
    return f"quality.objection.{_EVENT.get(action, action)}"


def audit_details(o: Objection) -> dict[str, Any]:
    """What an objection's audit event records: the step, never the record's values."""
    last = o.history[-1]
    return {
        "objection": o.id,
        "grant": o.grant_id,
        "entry": o.entry,
        "provider": o.provider,
        "consumer": o.consumer,
        "state": o.state,
        "round": o.round,
        "fields": list(o.fields),
        "by": last.by,
        "note": last.note,
        "due_at": o.due_at.isoformat() if o.due_at else None,
    }
