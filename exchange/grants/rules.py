"""Grant rules as pure functions: what may be requested, who may decide, which masks apply.

Nothing here touches Kafka; :mod:`exchange.grants.store` reads and writes grants and audits each
change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping

from exchange.catalog.avro import FieldType
from exchange.catalog.model import CatalogEntry
from exchange.errors import ExchangeError
from exchange.grants.disclosure import rebuild_problems
from exchange.grants.model import (
    DEFAULT_MASK,
    Actor,
    Decision,
    Grant,
    GrantRequest,
    GrantTerms,
    Mask,
)


class GrantError(ExchangeError):
    """A grant request or decision the rules do not allow; ``code`` says which rule."""


def request_problems(
    request: GrantRequest,
    entry: CatalogEntry | None,
    fields: Mapping[str, FieldType],
    departments: Collection[str],
) -> list[str]:
    """Every reason the request cannot be granted (empty when it can)."""
    problems: list[str] = []
    if request.consumer not in departments:
        problems.append(f"consumer: unknown department {request.consumer!r}")
    if entry is None:
        return [*problems, f"entry: no catalog entry {request.entry!r}"]
    if entry.sharing == "none":
        problems.append(f"entry: {entry.id} is never shared (不予共享)")
    if request.consumer == entry.provider:
        problems.append(f"consumer: {request.consumer} provides {entry.id} itself")
    if not request.fields:
        problems.append("fields: name at least one field")
    seen: set[str] = set()
    for name in request.fields:
        if name not in fields:
            problems.append(f"fields: {entry.id} has no field {name!r}")
        elif name in seen:
            problems.append(f"fields: {name} is listed twice")
        seen.add(name)
    if request.valid_until <= request.valid_from:
        problems.append("valid_until: must be after valid_from")
    for predicate in request.row_filter:
        ftype = fields.get(predicate.field)
        if ftype is None:
            problems.append(f"row_filter: {entry.id} has no field {predicate.field!r}")
        elif predicate.op == "prefix" and not ftype.is_string:
            problems.append(f"row_filter: prefix needs a text field, {predicate.field} is not")
    for name, mask in request.masks.items():
        if name not in request.fields:
            problems.append(f"masks: {name} is not one of the granted fields")
        elif (
            mask.kind == "none"
            and entry.sensitivity(name) == "sensitive"
            and not request.legal_basis.strip()
        ):
            problems.append(f"masks: unmasking sensitive field {name} needs a legal_basis")
    granted = [f for f in request.fields if f in fields]
    return problems + rebuild_problems(entry, granted, effective_masks(request, entry))


def effective_masks(request: GrantRequest | GrantTerms, entry: CatalogEntry) -> dict[str, Mask]:
    """The masks of the granted fields: sensitive ones by default, plus the overrides."""
    out: dict[str, Mask] = {}
    for name in request.fields:
        mask = request.masks.get(name)
        if mask is None and entry.sensitivity(name) == "sensitive":
            mask = DEFAULT_MASK
        if mask is not None and mask.kind != "none":
            out[name] = mask
    return out


def new_grant(
    grant_id: str,
    request: GrantRequest,
    by: Actor,
    at: dt.datetime,
    *,
    origin: str = "cli",
) -> Grant:
    return Grant(
        id=grant_id,
        request=request,
        state="requested",
        requested_by=by,
        requested_at=at,
        origin=origin,
    )


def may_decide(entry: CatalogEntry, actor: Actor, operators: Collection[str]) -> bool:
    """有条件共享: the provider department or a platform operator decides."""
    return actor.department == entry.provider or actor.department in operators


def approve(
    grant: Grant,
    entry: CatalogEntry,
    by: Actor,
    at: dt.datetime,
    operators: Collection[str],
    note: str = "",
    terms: GrantRequest | None = None,
) -> Grant:
    """``terms``: what is granted, if narrower than asked (:func:`narrowed`)."""
    _expect_state(grant, "requested", "approve")
    if terms is not None:
        grant = grant.model_copy(update={"request": terms})
    if entry.sharing == "none":
        raise GrantError(f"{entry.id} is never shared (不予共享)", code="NEVER_SHARED")
    # A request made before the catalog described its fields' layout is checked again here.
    rebuilt = rebuild_problems(entry, grant.request.fields, effective_masks(grant.request, entry))
    if rebuilt:
        raise GrantError(f"{grant.id} cannot be approved: {'; '.join(rebuilt)}", code="MASK_UNDONE")
    if entry.sharing == "conditional" and not may_decide(entry, by, operators):
        raise GrantError(
            f"{by.department} may not approve {grant.id}: {entry.id} is conditional (有条件共享), "
            f"approved by its provider {entry.provider} or a platform operator "
            f"({', '.join(sorted(operators)) or 'none configured'})",
            code="NOT_APPROVER",
        )
    return _next(grant, state="approved", decision=Decision(by=by, at=at, note=note))


def narrowed(
    request: GrantRequest,
    fields: Collection[str] | None = None,
    valid_until: dt.datetime | None = None,
) -> GrantRequest:
    """``request`` with fewer fields or an earlier end, as its approver may grant it (never
    more than was asked: an approver narrows, the consumer asks again for more)."""
    changes: dict[str, object] = {}
    if fields is not None:
        extra = sorted(set(fields) - set(request.fields))
        if extra:
            raise GrantError(
                f"cannot approve fields that were not requested: {', '.join(extra)}",
                code="NOT_NARROWER",
            )
        if not fields:
            raise GrantError("approve at least one field (or reject)", code="NOT_NARROWER")
        kept = tuple(f for f in request.fields if f in set(fields))
        changes["fields"] = kept
        changes["masks"] = {f: m for f, m in request.masks.items() if f in kept}
    if valid_until is not None:
        if valid_until > request.valid_until:
            raise GrantError(
                f"cannot approve until {valid_until.isoformat()}: the request ends "
                f"{request.valid_until.isoformat()}",
                code="NOT_NARROWER",
            )
        if valid_until <= request.valid_from:
            raise GrantError("the approved period must end after it starts", code="NOT_NARROWER")
        changes["valid_until"] = valid_until
    return request.model_copy(update=changes) if changes else request


def reject(
    grant: Grant,
    entry: CatalogEntry,
    by: Actor,
    at: dt.datetime,
    operators: Collection[str],
    note: str = "",
) -> Grant:
    _expect_state(grant, "requested", "reject")
    if not may_decide(entry, by, operators):
        raise GrantError(
            f"{by.department} may not reject {grant.id}: only {entry.provider} or a platform "
            "operator decides",
            code="NOT_APPROVER",
        )
    return _next(grant, state="rejected", decision=Decision(by=by, at=at, note=note))


def revoke(
    grant: Grant,
    entry: CatalogEntry | None,
    by: Actor,
    at: dt.datetime,
    operators: Collection[str],
    note: str = "",
) -> Grant:
    """The provider, an operator or the consumer itself may end a grant at any time."""
    if grant.state not in ("requested", "approved"):
        raise GrantError(f"{grant.id} is {grant.state}, nothing to revoke", code="BAD_STATE")
    allowed = by.department == grant.request.consumer or by.department in operators
    if entry is not None:
        allowed = allowed or by.department == entry.provider
    if not allowed:
        raise GrantError(
            f"{by.department} may not revoke {grant.id}: the provider, the consumer or a "
            "platform operator may",
            code="NOT_ALLOWED",
        )
    return _next(grant, state="revoked", revocation=Decision(by=by, at=at, note=note))


def _expect_state(grant: Grant, state: str, action: str) -> None:
    if grant.state != state:
        raise GrantError(f"cannot {action} {grant.id}: it is {grant.state}", code="BAD_STATE")


def _next(grant: Grant, **changes: object) -> Grant:
    return grant.model_copy(update={**changes, "revision": grant.revision + 1})
