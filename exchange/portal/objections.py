"""The portal's side of 数据质量异议: consumers file objections, providers answer them,
consumers confirm or reopen; each step audited, with its notices, in one transaction.

The state machine is :func:`exchange.quality.objections.advance` (pure); who acts for which side
is :func:`exchange.portal.policy.objection_side`. Fixes and escalations are the quality worker's
(``exchange/quality/worker.py``), not the portal's.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pydantic import ValidationError

from exchange.catalog.model import CatalogEntry
from exchange.config import ExchangeSettings
from exchange.grants.model import Grant
from exchange.portal import policy
from exchange.portal.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PortalError,
    TooManyAttemptsError,
)
from exchange.portal.model import Principal
from exchange.portal.notices import objection_notices
from exchange.portal.state import PortalState
from exchange.quality.calendar import step_deadlines
from exchange.quality.objections import (
    Objection,
    ObjectionError,
    Step,
    advance,
    audit_details,
    event_kind,
)

__all__ = ["ObjectionDesk", "Write"]

#: ``(kind, actor, details, records)``: the portal's audited write (``Portal._write``).
Write = Callable[[str, str, dict[str, Any], Sequence[tuple[str, str, Any | None]]], None]
_REFUSALS: dict[str, type[PortalError]] = {
    "forbidden": ForbiddenError,
    "conflict": ConflictError,
    "bad_request": BadRequestError,
}


class ObjectionDesk:
    """Objections as the portal's callers see and move them."""

    def __init__(
        self,
        settings: ExchangeSettings,
        state: PortalState,
        write: Write,
        entry: Callable[[str], CatalogEntry | None],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.topic = settings.topics.objections
        self.operators: Collection[str] = settings.grants.operators
        q = settings.quality
        self.max_open = q.max_open_per_grant
        self.max_rounds = q.max_rounds
        self.due = step_deadlines(q.deadlines, q.holidays, q.workdays, q.utc_offset_hours)
        self.state = state
        self._write = write
        self._entry = entry
        self.clock = clock

    def list(self, p: Principal, state: str | None = None) -> list[Objection]:
        """The objections that concern the caller's department, newest first."""
        found = [
            o
            for o in self.state.objections().values()
            if policy.objection_concerns(p, o, self.operators) and state in (None, "", o.state)
        ]
        return sorted(found, key=lambda o: o.filed_at, reverse=True)

    def get(self, p: Principal, objection_id: str) -> Objection:
        found = self.state.objection(objection_id)
        if found is None:
            self.state.sync()
            found = self.state.objection(objection_id)
        if found is None:
            raise NotFoundError(f"no objection {objection_id!r}", code="NO_SUCH_OBJECTION")
        policy.require_objection_visible(p, found, self.operators)
        return found

    def file(
        self,
        p: Principal,
        grant: Grant,
        key: str,
        fields: Sequence[str],
        problem: str,
        evidence: str = "",
        event: str | None = None,
    ) -> Objection:
        """An objection to the record ``key`` (as delivered) received under ``grant``: only
        fields the grant delivers, only a grant that was in force."""
        policy.require_objector(p, grant)
        if (
            grant.state not in ("approved", "revoked")
            or grant.decision is None
            or grant.request.valid_from > self.clock()
        ):
            raise ConflictError(
                f"{grant.id} never delivered anything ({grant.state})", code="NOT_DELIVERED"
            )
        open_now = sum(
            1
            for o in self.state.objections().values()
            if o.grant_id == grant.id and o.state != "confirmed"
        )
        if open_now >= self.max_open:
            raise TooManyAttemptsError(
                f"{grant.id} has {open_now} objections not yet confirmed (at most "
                f"{self.max_open}): confirm or wait for the answered ones first",
                code="TOO_MANY_OBJECTIONS",
            )
        unknown = sorted(set(fields) - set(grant.request.fields))
        if unknown:
            raise BadRequestError(
                f"fields: {', '.join(unknown)} not delivered under {grant.id} (it delivers "
                f"{', '.join(grant.request.fields)})",
                code="BAD_FIELDS",
            )
        entry = self._entry(grant.request.entry)
        if entry is None:
            raise ConflictError(f"entry {grant.request.entry} left the catalog", code="NO_ENTRY")
        now = self.clock()
        try:
            objection = Objection(
                id=f"obj-{secrets.token_hex(5)}",
                grant_id=grant.id,
                entry=entry.id,
                provider=entry.provider,
                consumer=grant.request.consumer,
                key=key.strip(),
                event=(event or "").strip() or None,
                fields=tuple(f.strip() for f in fields),
                problem=problem.strip(),
                evidence=evidence.strip(),
                history=(Step(state="filed", at=now, by=p.name),),
                due_at=self.due("filed", now),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise BadRequestError(f"{where}: {err['msg']}", code="BAD_OBJECTION") from exc
        self._save("quality.objection.filed", p.name, objection, entry)
        return objection

    def act(self, p: Principal, objection_id: str, action: str, note: str = "") -> Objection:
        """investigate, accept or reject (the provider); confirm or reopen (the consumer)."""
        # Read what is committed now: the quality worker may have moved it a moment ago (found
        # its fix, escalated it), and a step taken from an older copy would undo that.
        self.state.sync()
        current = self.get(p, objection_id)
        side = policy.objection_side(p, current, self.operators)
        try:
            moved = advance(
                current, action, side, p.name, self.clock(), self.due, note, self.max_rounds
            )
        except ObjectionError as exc:
            raise _REFUSALS[exc.refusal](exc.message, code=exc.code) from exc
        self._save(event_kind(action), p.name, moved, self._entry(moved.entry))
        return moved

    def _save(self, kind: str, actor: str, o: Objection, entry: CatalogEntry | None) -> None:
        title = entry.title if entry is not None else o.entry
        self._write(
            kind,
            actor,
            audit_details(o),
            [
                (self.topic, o.id, o),
                *(
                    (self.state.topics.portal_notices, n.id, n)
                    for n in objection_notices(o, title, o.history[-1].at)
                ),
            ],
        )
