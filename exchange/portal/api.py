"""The portal's HTTP API, ``/api/v1``: thin handlers over :class:`~exchange.portal.service.Portal`.

Callers are people with a session cookie (from ``POST /api/v1/session``) or department systems
with ``Authorization: Bearer exk_...``. A change made with a cookie must carry the session's
CSRF token in ``X-CSRF-Token`` (a token-authenticated call cannot be forged by another site: a
browser never adds the header by itself). Errors are ``{"error": {"code", "message"}}`` with
the status of :mod:`exchange.portal.errors`; the OpenAPI document is ``/api/v1/openapi.json``.
Handlers are plain functions (FastAPI runs them in its thread pool): the service blocks on
Kafka only for writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exchange.grants.model import Grant, GrantRequest
from exchange.portal.errors import (
    BadRequestError,
    NotFoundError,
    PortalError,
    UnauthenticatedError,
)
from exchange.portal.listing import PAGE_SIZE, EntryRow, search
from exchange.portal.model import Account, ApiToken, Principal, Role
from exchange.portal.service import Portal
from exchange.quality.objections import Objection

__all__ = [
    "SESSION_COOKIE",
    "AccountBody",
    "AccountChange",
    "AccountView",
    "Approval",
    "CatalogPage",
    "Decision",
    "DemandAnswer",
    "DemandBody",
    "EntryView",
    "IssuedToken",
    "LoginAnswer",
    "LoginBody",
    "Me",
    "ObjectionBody",
    "ObjectionStepBody",
    "ObjectionView",
    "Rejection",
    "TokenBody",
    "TokenView",
    "WebhookAnswer",
    "WebhookBody",
    "api_router",
    "caller",
    "install_error_handlers",
]

SESSION_COOKIE = "exchange_session"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    department: str
    username: str
    password: str


class LoginAnswer(BaseModel):
    account: str
    department: str
    roles: list[str]
    #: Send it back in ``X-CSRF-Token`` with every change made with the session cookie.
    csrf_token: str


class Me(BaseModel):
    kind: Literal["person", "token"]
    name: str
    department: str
    roles: list[str]


class Decision(_Body):
    note: str = Field("", max_length=2000)


class Approval(Decision):
    #: Grant only these of the requested fields (default: all requested).
    fields: list[str] | None = None
    #: End earlier than requested (default: as requested).
    valid_until: dt.datetime | None = None


class Rejection(_Body):
    #: Required: the legal or factual basis for refusing.
    reason: str = Field(..., max_length=2000)


class AccountBody(_Body):
    username: str
    password: str
    roles: list[Role]
    display_name: str = Field("", max_length=100)


class AccountChange(_Body):
    roles: list[Role] | None = None
    disabled: bool | None = None
    password: str | None = None


class AccountView(BaseModel):
    id: str
    department: str
    username: str
    display_name: str
    roles: list[str]
    disabled: bool
    created_at: dt.datetime
    created_by: str


class TokenBody(_Body):
    name: str = Field(..., max_length=100)
    roles: list[Role]
    days: int = 90


class TokenView(BaseModel):
    id: str
    department: str
    name: str
    roles: list[str]
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime
    revoked: bool


class IssuedToken(TokenView):
    #: Shown once: the portal keeps only its hash.
    token: str


class DemandBody(_Body):
    #: What data, in the department's words.
    title: str
    #: What for.
    purpose: str
    fields: list[str] = []
    #: The department believed to hold it, if known.
    holder: str | None = None


class DemandAnswer(_Body):
    outcome: Literal["matched", "accepted", "declined"]
    #: matched: the catalog entry that has the data.
    entry: str | None = None
    #: accepted: when it will be catalogued.
    due: dt.date | None = None
    #: declined: the reason (required); otherwise a note.
    note: str = Field("", max_length=2000)


class WebhookBody(_Body):
    #: Where the department's notices are POSTed (http or https).
    url: str


class WebhookAnswer(BaseModel):
    department: str
    url: str
    #: Shown once: verify X-Exchange-Signature with it.
    secret: str


class ObjectionBody(_Body):
    #: The grant the record was received under.
    grant_id: str
    #: The record's key as received (the business key, or its hash under a hashing grant).
    key: str
    #: The fields that are wrong (delivered under the grant).
    fields: list[str] = Field(..., min_length=1, max_length=64)
    #: What is wrong.
    problem: str
    #: How the department knows (a document number, the value it has on file).
    evidence: str = ""
    #: The record's delivered ``event_id``, if known: names the very version objected to.
    event: str | None = None


class ObjectionStepBody(_Body):
    #: Why (required to reject or reopen).
    note: str = Field("", max_length=2000)


class ObjectionView(BaseModel):
    id: str
    grant_id: str
    entry: str
    provider: str
    consumer: str
    key: str
    event: str | None
    fields: list[str]
    problem: str
    evidence: str
    state: str
    round: int
    #: Each step: state, at, by, note.
    history: list[dict[str, Any]]
    #: When the current step is due; and when it was escalated for being late.
    due_at: dt.datetime | None
    escalated_at: dt.datetime | None


class EntryView(BaseModel):
    id: str
    title: str
    provider: str
    description: str
    sharing: str
    update_cycle: str
    #: name, description (from the record schema) and sensitivity of each field.
    fields: list[dict[str, str]]
    #: When the provider last published to it (one entry's view only; ``None``: no data).
    last_update: dt.datetime | None = None


class CatalogPage(BaseModel):
    #: Entries matching, in all.
    total: int
    offset: int
    entries: list[EntryView]


def _account_view(a: Account) -> AccountView:
    return AccountView(
        id=a.id,
        department=a.department,
        username=a.username,
        display_name=a.display_name,
        roles=sorted(a.roles),
        disabled=a.disabled,
        created_at=a.created_at,
        created_by=a.created_by,
    )


def _token_view(t: ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "department": t.department,
        "name": t.name,
        "roles": sorted(t.roles),
        "created_at": t.created_at,
        "created_by": t.created_by,
        "expires_at": t.expires_at,
        "revoked": t.revoked,
    }


def _entry_view(e: EntryRow) -> EntryView:
    return EntryView(
        id=e.id,
        title=e.title,
        provider=e.provider,
        description=e.description,
        sharing=e.sharing,
        update_cycle=e.update_cycle,
        fields=[
            {"name": f.name, "description": f.doc, "sensitivity": f.sensitivity} for f in e.fields
        ],
    )


def _grant_view(g: Grant) -> dict[str, Any]:
    out: dict[str, Any] = g.model_dump(mode="json")
    return out


def _objection_view(o: Objection) -> ObjectionView:
    # Not ``located``: where the version is in the source is the router's secret.
    return ObjectionView(**o.model_dump(mode="json", exclude={"located"}))


def _portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_csrf_token: Annotated[str | None, Header()] = None,
) -> Principal:
    """The authenticated caller; a cookie-authenticated change must carry its CSRF token."""
    portal = _portal(request)
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError(
                "Authorization must be 'Bearer <API token>'", code="BAD_AUTHORIZATION"
            )
        return portal.by_token(token.strip())
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        raise UnauthenticatedError(
            "log in first (POST /api/v1/session) or send an API token", code="NO_SESSION"
        )
    principal = portal.by_session(session)
    if request.method in UNSAFE:
        portal.check_csrf(principal, x_csrf_token)
    return principal


Caller = Annotated[Principal, Depends(caller)]


def api_router() -> APIRouter:
    r = APIRouter(prefix="/api/v1")

    @r.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @r.post("/session", response_model=LoginAnswer)
    def login(body: LoginBody, request: Request, response: Response) -> LoginAnswer:
        portal = _portal(request)
        address = request.client.host if request.client else "unknown"
        made = portal.login(body.department, body.username, body.password, address)
        response.set_cookie(
            SESSION_COOKIE,
            made.session_id,
            max_age=int(portal.settings.portal.session_max_s),
            httponly=True,
            secure=portal.settings.portal.secure_cookies,
            samesite="strict",
            path="/",
        )
        p = made.principal
        return LoginAnswer(
            account=p.name, department=p.department, roles=sorted(p.roles), csrf_token=made.csrf
        )

    @r.delete("/session", status_code=204)
    def logout(who: Caller, request: Request, response: Response) -> None:
        _portal(request).logout(who)
        response.delete_cookie(SESSION_COOKIE, path="/")

    @r.get("/me", response_model=Me)
    def me(who: Caller) -> Me:
        return Me(kind=who.kind, name=who.name, department=who.department, roles=sorted(who.roles))

    @r.get("/catalog", response_model=CatalogPage)
    def catalog(
        who: Caller,
        request: Request,
        q: str = "",
        provider: str | None = None,
        sharing: str | None = None,
        update_cycle: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=4 * PAGE_SIZE)] = PAGE_SIZE,
    ) -> CatalogPage:
        """Catalog entries with every word of ``q`` in their id, title, description or fields
        (names and descriptions), and the given provider, sharing class and update cycle; a page
        of them."""
        rows = list(_portal(request).entry_rows.values())
        found = search(rows, q, provider, sharing, update_cycle, offset, limit)
        return CatalogPage(
            total=found.total, offset=offset, entries=[_entry_view(e) for e in found.rows]
        )

    @r.get("/catalog/{entry_id}", response_model=EntryView)
    def entry(entry_id: str, who: Caller, request: Request) -> EntryView:
        """An entry, with when its provider last published to it."""
        portal = _portal(request)
        found = portal.entry_rows.get(entry_id)
        if found is None:
            raise NotFoundError(f"no catalog entry {entry_id!r}", code="NO_ENTRY")
        view = _entry_view(found)
        view.last_update = portal.last_updates.get(entry_id)
        return view

    @r.get("/grants")
    def grants(who: Caller, request: Request) -> list[dict[str, Any]]:
        return [_grant_view(g) for g in _portal(request).grants(who)]

    @r.get("/inbox")
    def inbox(who: Caller, request: Request) -> list[dict[str, Any]]:
        return [_grant_view(g) for g in _portal(request).inbox(who)]

    @r.get("/grants/{grant_id}")
    def grant(grant_id: str, who: Caller, request: Request) -> dict[str, Any]:
        return _grant_view(_portal(request).grant(who, grant_id))

    @r.get("/grants/{grant_id}/activity")
    def activity(grant_id: str, who: Caller, request: Request) -> dict[str, Any]:
        """What was delivered under the grant (records, the latest receipts) and its history,
        from the audit trail; only for its consumer and its entry's provider."""
        return _portal(request).activity(who, grant_id)

    @r.post("/grants", status_code=201)
    def request_grant(body: dict[str, Any], who: Caller, request: Request) -> dict[str, Any]:
        body = {"consumer": who.department, **body}
        try:
            grant_request = GrantRequest.model_validate(body)
        except ValidationError as exc:
            raise BadRequestError(_problems(exc), code="BAD_REQUEST") from exc
        return _grant_view(_portal(request).request(who, grant_request))

    @r.post("/grants/{grant_id}/approve")
    def approve(grant_id: str, body: Approval, who: Caller, request: Request) -> dict[str, Any]:
        """Approve a request as asked, or narrower: fewer fields, an earlier end."""
        decided = _portal(request).decide(
            who, grant_id, True, body.note, body.fields, body.valid_until
        )
        return _grant_view(decided)

    @r.post("/grants/{grant_id}/reject")
    def reject(grant_id: str, body: Rejection, who: Caller, request: Request) -> dict[str, Any]:
        return _grant_view(_portal(request).decide(who, grant_id, False, body.reason))

    @r.post("/grants/{grant_id}/revoke")
    def revoke(grant_id: str, body: Decision, who: Caller, request: Request) -> dict[str, Any]:
        return _grant_view(_portal(request).revoke(who, grant_id, body.note))

    @r.get("/demands")
    def demands(who: Caller, request: Request, state: str | None = None) -> list[dict[str, Any]]:
        """供需对接清单: every department's needs and their answers."""
        return [d.model_dump(mode="json") for d in _portal(request).demands(state)]

    @r.post("/demands", status_code=201)
    def post_demand(body: DemandBody, who: Caller, request: Request) -> dict[str, Any]:
        made = _portal(request).post_demand(who, body.title, body.purpose, body.fields, body.holder)
        return made.model_dump(mode="json")

    @r.post("/demands/{demand_id}/answer")
    def answer_demand(
        demand_id: str, body: DemandAnswer, who: Caller, request: Request
    ) -> dict[str, Any]:
        answered = _portal(request).answer_demand(
            who, demand_id, body.outcome, entry=body.entry, due=body.due, note=body.note
        )
        return answered.model_dump(mode="json")

    @r.get("/objections", response_model=list[ObjectionView])
    def objections(who: Caller, request: Request, state: str | None = None) -> list[ObjectionView]:
        """数据质量异议 that concern the caller's department (filed by it or on its entries)."""
        return [_objection_view(o) for o in _portal(request).objections.list(who, state)]

    @r.post("/objections", response_model=ObjectionView, status_code=201)
    def file_objection(body: ObjectionBody, who: Caller, request: Request) -> ObjectionView:
        """Object to a record received: it reaches the provider's inbox and webhook."""
        portal = _portal(request)
        grant = portal.grant(who, body.grant_id)
        made = portal.objections.file(
            who, grant, body.key, body.fields, body.problem, body.evidence, body.event
        )
        return _objection_view(made)

    @r.get("/objections/{objection_id}", response_model=ObjectionView)
    def objection(objection_id: str, who: Caller, request: Request) -> ObjectionView:
        return _objection_view(_portal(request).objections.get(who, objection_id))

    @r.post("/objections/{objection_id}/{action}", response_model=ObjectionView)
    def objection_step(
        objection_id: str,
        action: Literal["investigate", "accept", "reject", "confirm", "reopen"],
        body: ObjectionStepBody,
        who: Caller,
        request: Request,
    ) -> ObjectionView:
        """The provider investigates, accepts or rejects (with its reason); the consumer
        confirms a fix or a rejection, or reopens (with its reason). Fixes are found by the
        exchange from the provider's next version of the record."""
        moved = _portal(request).objections.act(who, objection_id, action, body.note)
        return _objection_view(moved)

    @r.get("/catalog/{entry_id}/quality")
    def quality(entry_id: str, who: Caller, request: Request) -> dict[str, Any]:
        """The entry's quality measures and score, as the quality worker last took them
        (``docs/quality.md``): for its provider, the departments granted it and the
        operators; a check's failing values only for the provider."""
        found = _portal(request).measures(who, entry_id)
        if found is None:
            raise NotFoundError(f"no measures of {entry_id!r} for you", code="NO_MEASURES")
        return found

    @r.get("/catalog/{entry_id}/quality/history")
    def quality_history(entry_id: str, who: Caller, request: Request) -> list[dict[str, Any]]:
        """The entry's latest scores (newest first) with each part of the score: what lowered
        it, and when. As ``/quality``: its provider, the departments granted it, operators."""
        rows = _portal(request).score_history(who, entry_id)
        if rows is None:
            raise NotFoundError(f"no quality of {entry_id!r} for you", code="NO_MEASURES")
        return [{"at": r.at.isoformat(), "score": r.score, "parts": dict(r.parts)} for r in rows]

    @r.get("/reports/assessment")
    def assessment(
        who: Caller, request: Request, period: Annotated[str, Query(max_length=16)]
    ) -> dict[str, Any]:
        """监督考核 per department over a quarter (2026Q4), month (2026-11) or year; platform
        operators only."""
        when, rows = _portal(request).assessment(who, period)
        return {
            "period": when.label,
            "start": when.start.isoformat(),
            "end": when.end.isoformat(),
            "departments": [r.__dict__ for r in rows],
        }

    @r.get("/notices")
    def notices(who: Caller, request: Request) -> list[dict[str, Any]]:
        """The caller's department's inbox, newest first (at most 100)."""
        return [n.model_dump(mode="json") for n in _portal(request).notices(who)]

    @r.put("/departments/{department}/webhook", response_model=WebhookAnswer)
    def set_webhook(
        department: str, body: WebhookBody, who: Caller, request: Request
    ) -> WebhookAnswer:
        """Where the department's notices are also POSTed, signed with the secret returned."""
        hook, secret = _portal(request).set_webhook(who, department, body.url)
        return WebhookAnswer(department=department, url=hook.url, secret=secret)

    @r.delete("/departments/{department}/webhook", status_code=204)
    def remove_webhook(department: str, who: Caller, request: Request) -> None:
        _portal(request).remove_webhook(who, department)

    @r.get("/departments/{department}/accounts", response_model=list[AccountView])
    def accounts(department: str, who: Caller, request: Request) -> list[AccountView]:
        return [_account_view(a) for a in _portal(request).accounts(who, department)]

    @r.post("/departments/{department}/accounts", response_model=AccountView, status_code=201)
    def create_account(
        department: str, body: AccountBody, who: Caller, request: Request
    ) -> AccountView:
        made = _portal(request).create_account(
            who, department, body.username, body.password, body.roles, body.display_name
        )
        return _account_view(made)

    @r.patch("/departments/{department}/accounts/{username}", response_model=AccountView)
    def change_account(
        department: str, username: str, body: AccountChange, who: Caller, request: Request
    ) -> AccountView:
        changed = _portal(request).update_account(
            who,
            f"{department}/{username}",
            roles=body.roles,
            disabled=body.disabled,
            password=body.password,
        )
        return _account_view(changed)

    @r.get("/departments/{department}/tokens", response_model=list[TokenView])
    def tokens(department: str, who: Caller, request: Request) -> list[dict[str, Any]]:
        return [_token_view(t) for t in _portal(request).tokens(who, department)]

    @r.post("/departments/{department}/tokens", response_model=IssuedToken, status_code=201)
    def issue_token(
        department: str, body: TokenBody, who: Caller, request: Request
    ) -> dict[str, Any]:
        token, secret = _portal(request).issue_token(
            who, department, body.name, body.roles, body.days
        )
        return {**_token_view(token), "token": secret}

    @r.delete("/tokens/{token_id}", response_model=TokenView)
    def revoke_token(token_id: str, who: Caller, request: Request) -> dict[str, Any]:
        return _token_view(_portal(request).revoke_token(who, token_id))

    return r


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"error": {"code", "message"}}`` with its status."""

    @app.exception_handler(PortalError)
    def portal_error(_request: Request, exc: PortalError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status
        )

    @app.exception_handler(RequestValidationError)
    def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": {"code": "BAD_REQUEST", "message": message}}, status_code=422)
