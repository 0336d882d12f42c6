"""Grants: who may receive which fields of which entry, for what purpose and until when.

A grant is one JSON value under its id on the compacted ``exchange.grants`` topic; every change
(request, approval, rejection, revocation) rewrites the whole value with ``revision`` + 1, and is
also an audit event. ``expired`` is not stored: it follows from ``valid_until`` and the clock.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

#: The seeds' usage scenarios (应用场景), plus ``other`` with free text.
Purpose = Literal[
    "administrative_basis",  # 行政依据
    "work_reference",  # 工作参考
    "data_verification",  # 数据校核
    "business_collaboration",  # 业务协同
    "other",
]
PURPOSE_LABELS: dict[str, str] = {
    "administrative_basis": "行政依据",
    "work_reference": "工作参考",
    "data_verification": "数据校核",
    "business_collaboration": "业务协同",
    "other": "其他",
}
#: Stored states; ``active``/``pending``/``expired`` are derived from an approved grant's period.
GrantState = Literal["requested", "approved", "rejected", "revoked"]
Status = Literal["requested", "pending", "active", "expired", "rejected", "revoked"]
Scalar = str | int | float | bool
GRANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Text that thousands of grants repeat (departments, entries, field names, purposes, legal
#: bases): one shared copy each. A router holds every grant; 10,000 of them decoded from JSON
#: would otherwise keep 10,000 copies of each.
Shared = Annotated[str, AfterValidator(sys.intern)]
#: Bumped when the JSON layout of grants on ``exchange.grants`` changes.
GRANT_RECORD_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Predicate(_Model):
    """One condition of a row filter; a row passes a filter when it meets every predicate."""

    field: str
    op: Literal["eq", "in", "prefix"]
    values: tuple[Scalar, ...]

    @model_validator(mode="after")
    def _arity(self) -> Predicate:
        if not self.values:
            raise ValueError(f"{self.field}: {self.op} needs a value")
        if self.op != "in" and len(self.values) != 1:
            raise ValueError(f"{self.field}: {self.op} takes one value, use 'in' for several")
        if self.op == "prefix" and not isinstance(self.values[0], str):
            raise ValueError(f"{self.field}: prefix takes a text value, e.g. '1406'")
        return self


def parse_row_filter(raw: Any) -> tuple[Predicate, ...]:
    """``{region_code: {prefix: '1406'}, gender: {in: ['1', '2']}}`` or a list of predicates."""
    if raw is None:
        return ()
    if isinstance(raw, list | tuple):
        return tuple(p if isinstance(p, Predicate) else Predicate(**p) for p in raw)
    if not isinstance(raw, dict):
        raise ValueError(
            "row_filter must map fields to a condition, e.g. {region_code: {prefix: '1406'}}"
        )
    out = []
    for field, cond in raw.items():
        if not isinstance(cond, dict) or len(cond) != 1:
            raise ValueError(
                f"{field}: the condition must be one of eq, in, prefix, e.g. {{eq: '140602'}}"
            )
        ((op, value),) = cond.items()
        if op not in ("eq", "in", "prefix"):
            raise ValueError(f"{field}: unknown condition {op!r}; use eq, in or prefix")
        values = tuple(value) if isinstance(value, list | tuple) else (value,)
        out.append(Predicate(field=str(field), op=op, values=values))
    return tuple(out)


class Mask(_Model):
    """How a field's value is hidden in deliveries.

    ``keep``: keep the first and last n characters, the rest become ``*``; ``hash``: an HMAC of the
    value with the grant's own salt (joinable within the grant, not across grants); ``redact``:
    always null; ``none``: the value as is (unmasks a sensitive field; needs a legal basis).
    """

    kind: Literal["keep", "hash", "redact", "none"]
    first: Annotated[int, Field(ge=0)] = 0
    last: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, raw: Any) -> Any:
        # YAML short forms: `hash`, `redact`, `none`, or `{keep: {first: 6, last: 4}}`.
        if isinstance(raw, str):
            return {"kind": raw}
        if isinstance(raw, dict) and "keep" in raw and len(raw) == 1:
            return {"kind": "keep", **(raw["keep"] or {})}
        return raw

    def describe(self) -> str:
        if self.kind == "keep":
            return f"keep first {self.first}, last {self.last}"
        return {"hash": "salted hash", "redact": "redacted", "none": "unmasked"}[self.kind]


#: Applied to a ``sensitive`` field the grant does not mask otherwise.
DEFAULT_MASK = Mask(kind="keep", first=1, last=1)


class GrantRequest(_Model):
    """What a consumer department asks for (方式、范围和期限: manner, scope and term)."""

    consumer: Shared
    entry: Shared
    fields: tuple[Shared, ...]
    purpose: Purpose
    #: Free text: the concrete use (e.g. 低保资格核查).
    purpose_text: Shared = ""
    #: The law, regulation or document that allows the use (法律依据).
    legal_basis: Shared = ""
    valid_from: dt.datetime
    valid_until: dt.datetime
    row_filter: tuple[Predicate, ...] = ()
    masks: dict[str, Mask] = Field(default_factory=dict)

    @field_validator("row_filter", mode="before")
    @classmethod
    def _filter(cls, raw: Any) -> tuple[Predicate, ...]:
        return parse_row_filter(raw)

    @field_validator("fields", mode="before")
    @classmethod
    def _field_list(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return tuple(f.strip() for f in raw.split(",") if f.strip())
        return raw

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-01-01T00:00:00+08:00")
        return value


class Actor(_Model):
    """Who did something: a department and, where known, the person."""

    department: Shared
    person: Shared = ""

    def __str__(self) -> str:
        return f"{self.department} ({self.person})" if self.person else self.department


class Decision(_Model):
    by: Actor
    at: dt.datetime
    note: str = ""


class Grant(_Model):
    id: Annotated[str, Field(pattern=GRANT_ID.pattern)]
    request: GrantRequest
    state: GrantState
    requested_by: Actor
    requested_at: dt.datetime
    #: Approval or rejection: who and when (有条件共享 needs the provider or the operator).
    decision: Decision | None = None
    revocation: Decision | None = None
    #: ``cli`` or ``config:<file>`` for grants declared in ``config/grants/``.
    origin: Shared = "cli"
    #: Grants written before salts were derived in the router (``routing/salts.py``) carried
    #: theirs here; read, never used, never written again.
    salt: str | None = Field(default=None, exclude=True)
    revision: Annotated[int, Field(ge=1)] = 1
    version: int = GRANT_RECORD_VERSION

    def status(self, now: dt.datetime) -> Status:
        return _status(self.state, self.request.valid_from, self.request.valid_until, now)

    def is_active(self, now: dt.datetime) -> bool:
        return self.status(now) == "active"

    def terms(self) -> GrantTerms:
        r = self.request
        return GrantTerms(
            id=self.id,
            revision=self.revision,
            state=self.state,
            consumer=r.consumer,
            entry=r.entry,
            fields=r.fields,
            valid_from=r.valid_from,
            valid_until=r.valid_until,
            row_filter=r.row_filter,
            masks={name: _shared(mask) for name, mask in r.masks.items()},
        )

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Grant:
        return cls.model_validate_json(data)


# Grants with the same mask share one. Weak, and keyed by the mask's fields rather than the
# mask (a key is held strongly): a mask no grant uses any more leaves the table.
_MASKS: weakref.WeakValueDictionary[tuple[str, int, int], Mask] = weakref.WeakValueDictionary()


def _shared(mask: Mask) -> Mask:
    return _MASKS.setdefault((mask.kind, mask.first, mask.last), mask)


@dataclass(frozen=True, slots=True)
class GrantTerms:
    """What a grant lets through, to whom and when: all that routing, ACL sync and monitoring
    read of it, without its history, purpose or legal basis.

    Processes that follow every grant (a router, the ACL watch, ``exchange status``) hold these:
    about 1 KB each, where the whole :class:`Grant` as pydantic models is about 5 KB.
    ``revision`` changes with every change to the grant, so equal terms are the same grant.
    """

    id: str
    revision: int
    state: GrantState
    consumer: str
    entry: str
    fields: tuple[str, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime
    row_filter: tuple[Predicate, ...]
    masks: Mapping[str, Mask]

    def status(self, now: dt.datetime) -> Status:
        return _status(self.state, self.valid_from, self.valid_until, now)

    def is_active(self, now: dt.datetime) -> bool:
        return self.status(now) == "active"

    def generation(self) -> str:
        """The grant's generation: ``r<revision>``. Every change to a grant (narrower, wider,
        renewed, revoked) is a new revision, so an active grant's deliveries under each
        revision go to a topic of their own (``TopicSettings.delivery_of``): the router
        backfills the new one with the current rows under the new terms and deletes the old
        one, and a grant made active again never meets an old generation's holdings."""
        return f"r{self.revision}"


def _status(
    state: GrantState, valid_from: dt.datetime, valid_until: dt.datetime, now: dt.datetime
) -> Status:
    if state != "approved":
        return state
    if now < valid_from:
        return "pending"
    if now >= valid_until:
        return "expired"
    return "active"
