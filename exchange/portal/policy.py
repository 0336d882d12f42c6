"""Who may do what in the portal: pure functions over the caller and the thing acted on.

The service enforces these, never the caller's claim: a principal's department and roles come
from its session or token (``auth.py``). Each ``require_*`` raises :class:`ForbiddenError` (or
:class:`NotFoundError`, where telling would leak that another department's grant exists) with the
reason; ``visible_*`` filter what a department is shown. Unit-tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from exchange.catalog.model import CatalogEntry
from exchange.grants.model import Grant
from exchange.portal.errors import BadRequestError, ForbiddenError, NotFoundError
from exchange.portal.model import ROLES, TOKEN_ROLES, Principal, Role
from exchange.quality.objections import Objection, Side

__all__ = [
    "concerns",
    "is_operator",
    "objection_concerns",
    "objection_side",
    "require_account_admin",
    "require_decider",
    "require_demand_answerer",
    "require_demand_poster",
    "require_objection_visible",
    "require_objector",
    "require_operator",
    "require_requester",
    "require_revoker",
    "require_roles_grantable",
    "require_visible",
    "visible_grants",
]


def _operator(p: Principal, operators: Collection[str]) -> bool:
    """A platform operator: the role, held in an operator department."""
    return p.has("operator") and p.department in operators


def is_operator(p: Principal, operators: Collection[str]) -> bool:
    return _operator(p, operators)


def concerns(
    p: Principal, grant: Grant, entry: CatalogEntry | None, operators: Collection[str]
) -> bool:
    """A grant concerns its consumer and its entry's provider (and the platform operators)."""
    provider = entry.provider if entry is not None else None
    return p.department in (grant.request.consumer, provider) or _operator(p, operators)


def visible_grants(
    p: Principal,
    grants: Iterable[Grant],
    entries: dict[str, CatalogEntry],
    operators: Collection[str],
) -> list[Grant]:
    """The grants ``p`` may see: those that concern its department."""
    return [g for g in grants if concerns(p, g, entries.get(g.request.entry), operators)]


def require_visible(
    p: Principal, grant: Grant, entry: CatalogEntry | None, operators: Collection[str]
) -> None:
    if not concerns(p, grant, entry, operators):
        raise NotFoundError(f"no grant {grant.id!r}", code="NO_SUCH_GRANT")


def require_requester(p: Principal, consumer: str, operators: Collection[str]) -> None:
    """Only the consumer department's applicants request for it (or a platform operator)."""
    if _operator(p, operators):
        return
    if p.department != consumer:
        raise ForbiddenError(
            f"{p.name} is of {p.department} and may not request for {consumer}: a department "
            "requests for itself",
            code="OTHER_DEPARTMENT",
        )
    if not p.has("applicant"):
        raise ForbiddenError(
            f"{p.name} may not request grants: that needs the applicant role in {p.department}",
            code="NOT_APPLICANT",
        )


def require_decider(
    p: Principal,
    grant: Grant,
    entry: CatalogEntry,
    operators: Collection[str],
    reason: str | None,
    rejecting: bool,
) -> None:
    """Only an approver of the providing department decides; a platform operator only for a
    conditional (有条件共享) entry. A rejection needs its reason (no refusal without a basis)."""
    require_visible(p, grant, entry, operators)
    if rejecting and not (reason or "").strip():
        raise BadRequestError(
            "a rejection needs its reason (the legal or factual basis for refusing)",
            code="REASON_REQUIRED",
        )
    if p.department == entry.provider and p.has("approver"):
        return
    if _operator(p, operators) and entry.sharing == "conditional":
        return
    if p.department == entry.provider:
        raise ForbiddenError(
            f"{p.name} may not decide requests: that needs the approver role in {p.department}",
            code="NOT_APPROVER",
        )
    raise ForbiddenError(
        f"{p.name} may not decide {grant.id}: requests for {entry.id} are decided by an "
        f"approver of its provider {entry.provider}",
        code="NOT_PROVIDER",
    )


def require_revoker(
    p: Principal, grant: Grant, entry: CatalogEntry | None, operators: Collection[str]
) -> None:
    """The consumer ends its own grant (an applicant or administrator of it), the provider's
    approvers end grants on its entries, and a platform operator any."""
    require_visible(p, grant, entry, operators)
    if _operator(p, operators):
        return
    if p.department == grant.request.consumer and (p.has("applicant") or p.has("admin")):
        return
    if entry is not None and p.department == entry.provider and p.has("approver"):
        return
    raise ForbiddenError(
        f"{p.name} may not end {grant.id}: its consumer's applicants or administrators, its "
        "provider's approvers or a platform operator may",
        code="NOT_ALLOWED",
    )


def require_account_admin(p: Principal, department: str, operators: Collection[str]) -> None:
    """A department's administrators manage its accounts and tokens; operators any."""
    if _operator(p, operators):
        return
    if p.kind != "person" or p.department != department or not p.has("admin"):
        raise ForbiddenError(
            f"{p.name} may not manage the accounts of {department}: that needs the admin role "
            "there",
            code="NOT_ADMIN",
        )


def require_roles_grantable(
    p: Principal,
    department: str,
    roles: Collection[Role],
    operators: Collection[str],
    token: bool = False,
) -> None:
    """Roles an administrator may hand out: never ``operator`` outside an operator department,
    and only a platform operator makes operators; a token only viewer/applicant/approver."""
    allowed = TOKEN_ROLES if token else ROLES
    unknown = sorted(set(roles) - set(allowed))
    if unknown:
        raise BadRequestError(
            f"roles {', '.join(unknown)} are not for {'a token' if token else 'an account'}; "
            f"choose from {', '.join(allowed)}",
            code="BAD_ROLES",
        )
    if "operator" in roles:
        if department not in operators:
            raise BadRequestError(
                f"{department} is not a platform operator department "
                f"({', '.join(sorted(operators)) or 'none configured'})",
                code="BAD_ROLES",
            )
        if not _operator(p, operators):
            raise ForbiddenError("only a platform operator makes operators", code="NOT_OPERATOR")


def require_demand_poster(p: Principal) -> None:
    """A department's applicants (or administrators) post its needs."""
    if not (p.has("applicant") or p.has("admin")):
        raise ForbiddenError(
            f"{p.name} may not post a need: that needs the applicant or admin role in "
            f"{p.department}",
            code="NOT_APPLICANT",
        )


def require_demand_answerer(p: Principal, holder: str | None, operators: Collection[str]) -> None:
    """The department named as holder (its approvers or administrators) or a platform
    operator answers a need."""
    if _operator(p, operators):
        return
    if holder is not None and p.department == holder and (p.has("approver") or p.has("admin")):
        return
    named = f"{holder}'s approvers or administrators, or " if holder else ""
    raise ForbiddenError(
        f"{p.name} may not answer this need: {named}a platform operator may",
        code="NOT_ANSWERER",
    )


def objection_concerns(p: Principal, objection: Objection, operators: Collection[str]) -> bool:
    """An objection concerns the consumer that filed it, the entry's provider, and the
    platform operators (who are told when it is late)."""
    return p.department in (objection.consumer, objection.provider) or _operator(p, operators)


def require_objection_visible(
    p: Principal, objection: Objection, operators: Collection[str]
) -> None:
    if not objection_concerns(p, objection, operators):
        raise NotFoundError(f"no objection {objection.id!r}", code="NO_SUCH_OBJECTION")


def require_objector(p: Principal, grant: Grant) -> None:
    """A grant's consumer objects to what it received under it: its applicants or approvers
    (people, or the department's systems by token)."""
    if p.department != grant.request.consumer:
        raise NotFoundError(f"no grant {grant.id!r}", code="NO_SUCH_GRANT")
    if not (p.has("applicant") or p.has("approver")):
        raise ForbiddenError(
            f"{p.name} may not file objections: that needs the applicant or approver role in "
            f"{p.department}",
            code="NOT_APPLICANT",
        )


def objection_side(p: Principal, objection: Objection, operators: Collection[str]) -> Side:
    """Which side ``p`` acts for on an objection: the provider's approvers answer it, the
    consumer's applicants and approvers confirm or reopen it. Operators watch, not act."""
    require_objection_visible(p, objection, operators)
    if p.department == objection.provider and p.has("approver"):
        return "provider"
    if p.department == objection.consumer and (p.has("applicant") or p.has("approver")):
        return "consumer"
    raise ForbiddenError(
        f"{p.name} may not act on {objection.id}: its provider's approvers answer it, its "
        "consumer's applicants or approvers confirm or reopen it",
        code="NOT_ALLOWED",
    )


def require_operator(p: Principal, operators: Collection[str]) -> None:
    """Platform-wide reports are the platform operators' (大数据局)."""
    if not _operator(p, operators):
        raise ForbiddenError(
            f"{p.name} is not a platform operator: reports are for the operators",
            code="NOT_OPERATOR",
        )
