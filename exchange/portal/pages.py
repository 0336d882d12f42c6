"""The portal's web pages: server-rendered HTML forms over the same :class:`Portal` as the API.

No script is needed to use them (a government office's browsers vary); every form that changes
something carries the session's CSRF token in a hidden field, and the login form a token of its
own (a double-submit cookie), so no other site can submit one. Chinese first; ``?lang=en``
switches to English (kept in a cookie). A refusal is shown on the page with the service's own
message, the same words as the API and the CLI.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from exchange.grants.model import PURPOSE_LABELS, Grant, GrantRequest
from exchange.portal import policy
from exchange.portal.api import SESSION_COOKIE
from exchange.portal.errors import ForbiddenError, PortalError, UnauthenticatedError
from exchange.portal.i18n import Language, translate
from exchange.portal.listing import PAGE_SIZE, EntryRow, search
from exchange.portal.model import ROLES, TOKEN_ROLES, Principal
from exchange.portal.secrets import new_secret
from exchange.portal.service import Portal, parse_roles

__all__ = [
    "CSRF_COOKIE",
    "LANG_COOKIE",
    "LOGIN_COOKIE",
    "Page",
    "PageError",
    "install_page_errors",
    "page_router",
]

LOGIN_COOKIE = "exchange_login"
LANG_COOKIE = "exchange_lang"
#: A grant ending within this many days is marked as expiring soon.
EXPIRING_DAYS = 7
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class PageError(Exception):
    """A page cannot be shown; the wrapped portal error says why."""

    def __init__(self, error: PortalError, lang: Language) -> None:
        super().__init__(error.message)
        self.error = error
        self.lang = lang


def _portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def _lang(request: Request) -> Language:
    wanted = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "zh"
    return "en" if wanted == "en" else "zh"


def _t(lang: Language) -> Callable[[str], str]:
    return lambda key: translate(key, lang)


class Page:
    """What every page handler gets: the caller (or none), the language, and the renderer."""

    def __init__(self, request: Request, who: Principal | None, csrf: str | None) -> None:
        self.request = request
        self.who = who
        self.csrf = csrf
        self.lang = _lang(request)
        self.portal = _portal(request)

    @property
    def person(self) -> Principal:
        """The logged-in caller (pages behind ``Logged`` always have one)."""
        if self.who is None:
            raise PageError(UnauthenticatedError("log in", code="NO_SESSION"), self.lang)
        return self.who

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        names = {d: dept.name for d, dept in self.portal.catalog.departments.items()}
        response = TEMPLATES.TemplateResponse(
            self.request,
            template,
            {
                "t": _t(self.lang),
                "lang": self.lang,
                "who": self.who,
                "csrf": self.csrf,
                "department_names": names,
                **context,
            },
            status_code=status,
        )
        if self.request.query_params.get("lang") in ("zh", "en"):
            response.set_cookie(LANG_COOKIE, self.lang, httponly=True, samesite="strict")
        response.headers["Cache-Control"] = "no-store"
        return response

    def fail(self, error: PortalError) -> PageError:
        return PageError(error, self.lang)


def _page(request: Request) -> Page:
    """A logged-in person's page; the CSRF token is the one their session was given (kept in a
    cookie the pages read: the session cookie holds only the session id)."""
    portal = _portal(request)
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        raise PageError(UnauthenticatedError("log in", code="NO_SESSION"), _lang(request))
    try:
        who = portal.by_session(session)
    except PortalError as exc:
        raise PageError(exc, _lang(request)) from exc
    csrf = request.cookies.get(CSRF_COOKIE)
    return Page(request, who, csrf)


#: The session's CSRF token, for the pages to put in their forms (HttpOnly: no script reads
#: it; a form posted from another site carries none, and SameSite=Strict keeps both cookies
#: from being sent with it at all).
CSRF_COOKIE = "exchange_csrf"
Logged = Annotated[Page, Depends(_page)]


def _checked(page: Page, csrf: str) -> None:
    try:
        page.portal.check_csrf(page.person, csrf)
    except PortalError as exc:
        raise page.fail(exc) from exc


async def _posted(page: Page, request: Request) -> FormData:
    """A posted form, once its CSRF field matched the session's."""
    form = await request.form()
    _checked(page, str(form.get("csrf", "")))
    return form


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _entry_view(portal: Portal, entry_id: str) -> EntryRow | None:
    return portal.entry_rows.get(entry_id)


def _grant_view(
    portal: Portal, who: Principal, g: Grant, now: dt.datetime, delivered: int = 0
) -> dict[str, Any]:
    entry = portal.entry(g.request.entry)
    req = g.request
    status = g.status(now)
    try:
        policy.require_revoker(who, g, entry, portal.operators)
        may_revoke = g.state in ("requested", "approved")
    except PortalError:
        may_revoke = False
    decision = g.decision
    return {
        "id": g.id,
        "entry": req.entry,
        "entry_title": entry.title if entry else req.entry,
        "consumer": req.consumer,
        "provider": entry.provider if entry else "",
        "fields": list(req.fields),
        "purpose": PURPOSE_LABELS.get(req.purpose, req.purpose),
        "purpose_text": req.purpose_text,
        "legal_basis": req.legal_basis,
        "valid_from": req.valid_from.date().isoformat(),
        "valid_until": req.valid_until.date().isoformat(),
        "status": status,
        "expiring": status == "active"
        and req.valid_until - now <= dt.timedelta(days=EXPIRING_DAYS),
        "requested_by": str(g.requested_by),
        "decided_by": str(decision.by) if decision else "",
        "decision_note": decision.note if decision else "",
        "may_revoke": may_revoke,
        "delivered": delivered,
    }


def page_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        if not request.cookies.get(SESSION_COOKIE):
            return _redirect("/login")
        return _redirect("/catalog")

    @r.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        return _login_form(Page(request, None, None))

    @r.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        department: Annotated[str, Form()],
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        page = Page(request, None, None)
        expected = request.cookies.get(LOGIN_COOKIE) or ""
        if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
            raise page.fail(ForbiddenError("the login form has expired; reload it", code="CSRF"))
        address = request.client.host if request.client else "unknown"
        try:
            made = page.portal.login(department, username, password, address)
        except PortalError as exc:
            raise page.fail(exc) from exc
        response = _redirect("/catalog")
        secure = page.portal.settings.portal.secure_cookies
        max_age = int(page.portal.settings.portal.session_max_s)
        for name, value in ((SESSION_COOKIE, made.session_id), (CSRF_COOKIE, made.csrf)):
            response.set_cookie(
                name, value, max_age=max_age, httponly=True, secure=secure, samesite="strict"
            )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @r.post("/logout")
    def logout(page: Logged, csrf: Annotated[str, Form()] = "") -> Response:
        _checked(page, csrf)
        page.portal.logout(page.person)
        response = _redirect("/login")
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie(CSRF_COOKIE)
        return response

    @r.get("/catalog", response_class=HTMLResponse)
    def catalog(
        page: Logged,
        q: str = "",
        provider: str = "",
        sharing: str = "",
        update_cycle: str = "",
        p: Annotated[int, Query(ge=1)] = 1,
    ) -> Response:
        every = list(page.portal.entry_rows.values())
        found = search(every, q, provider, sharing, update_cycle, (p - 1) * PAGE_SIZE)
        pages = max(1, -(-found.total // PAGE_SIZE))
        query = {"q": q, "provider": provider, "sharing": sharing, "update_cycle": update_cycle}
        return page.render(
            "catalog.html",
            entries=found.rows,
            total=found.total,
            page_number=p,
            pages=pages,
            query=query,
            q=q,
            provider=provider,
            sharing=sharing,
            update_cycle=update_cycle,
            providers=sorted({r.provider for r in every}),
            cycles=sorted({r.update_cycle for r in every}),
        )

    @r.get("/catalog/{entry_id}", response_class=HTMLResponse)
    def entry(entry_id: str, page: Logged) -> Response:
        view = _entry_view(page.portal, entry_id)
        if view is None:
            return page.render("error.html", 404, message=f"no catalog entry {entry_id!r}")
        updated = page.portal.last_updates.get(entry_id)
        last = _local(int(updated.timestamp() * 1000)) if updated else ""
        measures = page.portal.measures(page.person, entry_id)
        history = [
            {"at": _local(int(r.at.timestamp() * 1000)), "score": r.score, "parts": r.parts}
            for r in (page.portal.score_history(page.person, entry_id) or [])[:12]
        ]
        return page.render(
            "entry.html", entry=view, last_update=last, measures=measures, history=history
        )

    @r.get("/grants/new", response_class=HTMLResponse)
    def request_form(page: Logged, entry: str, renew: Annotated[str, Query()] = "") -> Response:
        """The request form; ``renew``: one of our grants, its terms filled in for a new
        period (a renewal is a new request, decided again)."""
        view = _entry_view(page.portal, entry)
        if view is None:
            return page.render("error.html", 404, message=f"no catalog entry {entry!r}")
        today = dt.date.today()
        form: dict[str, Any] = {
            "fields": [],
            "purpose": "data_verification",
            "purpose_text": "",
            "legal_basis": "",
            "valid_from": today.isoformat(),
            "valid_until": today.replace(year=today.year + 1).isoformat(),
            "filter_field": "",
            "filter_prefix": "",
        }
        if renew:
            try:
                old = page.portal.grant(page.person, renew).request
            except PortalError as exc:
                raise page.fail(exc) from exc
            prefix = next((p for p in old.row_filter if p.op == "prefix"), None)
            form.update(
                fields=list(old.fields),
                purpose=old.purpose,
                purpose_text=old.purpose_text,
                legal_basis=old.legal_basis,
                filter_field=prefix.field if prefix else "",
                filter_prefix=prefix.values[0] if prefix else "",
            )
        return page.render("request.html", entry=view, form=form, purposes=PURPOSE_LABELS)

    @r.post("/grants/new", response_class=HTMLResponse)
    async def request_grant(page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        entry_id = str(form.get("entry", ""))
        view = _entry_view(page.portal, entry_id)
        if view is None:
            return page.render("error.html", 404, message=f"no catalog entry {entry_id!r}")
        values: dict[str, Any] = {
            "fields": [str(f) for f in form.getlist("fields")],
            "purpose": str(form.get("purpose", "")),
            "purpose_text": str(form.get("purpose_text", "")),
            "legal_basis": str(form.get("legal_basis", "")),
            "valid_from": str(form.get("valid_from", "")),
            "valid_until": str(form.get("valid_until", "")),
            "filter_field": str(form.get("filter_field", "")),
            "filter_prefix": str(form.get("filter_prefix", "")).strip(),
        }
        body: dict[str, Any] = {
            "consumer": page.person.department,
            "entry": entry_id,
            "fields": values["fields"],
            "purpose": values["purpose"],
            "purpose_text": values["purpose_text"],
            "legal_basis": values["legal_basis"],
            "valid_from": _day(values["valid_from"]),
            "valid_until": _day(values["valid_until"]),
        }
        if values["filter_field"] and values["filter_prefix"]:
            body["row_filter"] = {values["filter_field"]: {"prefix": values["filter_prefix"]}}
        try:
            grant_request = GrantRequest.model_validate(body)
            made = await _in_thread(page.portal.request, page.person, grant_request)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
            return page.render(
                "request.html",
                422,
                entry=view,
                form=values,
                purposes=PURPOSE_LABELS,
                problems=problems,
            )
        except PortalError as exc:
            return page.render(
                "request.html",
                exc.status,
                entry=view,
                form=values,
                purposes=PURPOSE_LABELS,
                problems=exc.message.splitlines(),
            )
        return _redirect(f"/grants/{made.id}")

    @r.get("/grants", response_class=HTMLResponse)
    def grants(page: Logged) -> Response:
        now = dt.datetime.now(dt.UTC)
        who = page.person
        volumes = page.portal.trail.delivered()
        views = [
            _grant_view(page.portal, who, g, now, volumes.get(g.id, 0))
            for g in page.portal.grants(who)
        ]
        mine = page.person.department
        received = [{**v, "other": v["provider"]} for v in views if v["consumer"] == mine]
        provided = [{**v, "other": v["consumer"]} for v in views if v["provider"] == mine]
        return page.render("grants.html", received=received, provided=provided)

    @r.get("/grants/{grant_id}", response_class=HTMLResponse)
    def grant(grant_id: str, page: Logged) -> Response:
        try:
            found = page.portal.grant(page.person, grant_id)
        except PortalError as exc:
            raise page.fail(exc) from exc
        view = _grant_view(page.portal, page.person, found, dt.datetime.now(dt.UTC))
        activity = page.portal.activity(page.person, grant_id)
        for item in [*activity["recent"], *activity["history"]]:
            item["at"] = _local(item["ts_ms"])
        try:
            policy.require_objector(page.person, found)
            may_object = found.decision is not None and found.state in ("approved", "revoked")
        except PortalError:
            may_object = False
        return page.render("grant.html", grant=view, activity=activity, may_object=may_object)

    @r.get("/inbox", response_class=HTMLResponse)
    def inbox(page: Logged) -> Response:
        now = dt.datetime.now(dt.UTC)
        who = page.person
        pending = [_grant_view(page.portal, who, g, now) for g in page.portal.inbox(who)]
        return page.render("inbox.html", pending=pending)

    @r.post("/grants/{grant_id}/{action}")
    async def decide(grant_id: str, action: str, page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        note = str(form.get("note", ""))
        try:
            if action == "approve":
                # The form shows the requested fields checked and the requested end: an
                # approver unchecks fields or moves the end earlier to grant less.
                asked = page.portal.grant(page.person, grant_id).request
                fields: list[str] | None = [str(f) for f in form.getlist("fields")]
                if "narrow" not in form or set(fields or ()) == set(asked.fields):
                    fields = None
                until = _end_of(str(form.get("valid_until", "")))
                if until is not None and until >= asked.valid_until:
                    until = None  # the day the request ends: as asked
                await _in_thread(
                    lambda: page.portal.decide(page.person, grant_id, True, note, fields, until)
                )
            elif action == "reject":
                reason = str(form.get("reason", ""))
                await _in_thread(page.portal.decide, page.person, grant_id, False, reason)
            elif action == "revoke":
                await _in_thread(page.portal.revoke, page.person, grant_id, note)
            else:
                return page.render("error.html", 404, message=f"no action {action!r}")
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect("/inbox" if action in ("approve", "reject") else "/grants")

    @r.get("/notices", response_class=HTMLResponse)
    def notices(page: Logged) -> Response:
        rows = [
            {**n.model_dump(), "at_local": _local(int(n.at.timestamp() * 1000))}
            for n in page.portal.notices(page.person)
        ]
        return page.render("notices.html", notices=rows)

    @r.get("/demands", response_class=HTMLResponse)
    def demands(page: Logged, state: str = "") -> Response:
        who = page.person
        now = dt.datetime.now(dt.UTC)
        rows = []
        for d in page.portal.demands(state or None):
            try:
                policy.require_demand_answerer(who, d.holder, page.portal.operators)
                may_answer = d.state == "open"
            except PortalError:
                may_answer = False
            rows.append(
                {
                    **d.model_dump(),
                    "age_days": (now - d.created_at).days,
                    "may_answer": may_answer,
                }
            )
        try:
            policy.require_demand_poster(who)
            may_post = True
        except PortalError:
            may_post = False
        entries = sorted(page.portal.entries().values(), key=lambda e: e.id)
        return page.render(
            "demands.html", demands=rows, state=state, may_post=may_post, entries=entries
        )

    @r.post("/demands")
    async def post_demand(page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        try:
            await _in_thread(
                page.portal.post_demand,
                page.person,
                str(form.get("title", "")),
                str(form.get("purpose", "")),
                str(form.get("fields", "")).replace("，", ",").split(","),
                str(form.get("holder", "")) or None,
            )
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect("/demands")

    @r.post("/demands/{demand_id}/answer")
    async def answer_demand(demand_id: str, page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        due_text = str(form.get("due", ""))
        try:
            due = dt.date.fromisoformat(due_text) if due_text else None
        except ValueError:
            return page.render("error.html", 422, message=f"due: not a date: {due_text!r}")
        outcome = str(form.get("outcome", ""))
        try:
            await _in_thread(
                lambda: page.portal.answer_demand(
                    page.person,
                    demand_id,
                    outcome,
                    entry=str(form.get("entry", "")) or None,
                    due=due,
                    note=str(form.get("note", "")),
                )
            )
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect("/demands")

    @r.get("/accounts", response_class=HTMLResponse)
    def accounts(page: Logged, department: str = "", issued: str = "") -> Response:
        department = department or page.person.department
        try:
            people = page.portal.accounts(page.person, department)
            tokens = page.portal.tokens(page.person, department)
        except PortalError as exc:
            raise page.fail(exc) from exc
        return page.render(
            "accounts.html",
            department=department,
            accounts=[{**a.model_dump(), "roles": sorted(a.roles)} for a in people],
            tokens=[{**k.model_dump(), "roles": sorted(k.roles)} for k in tokens],
            roles=ROLES,
            token_roles=TOKEN_ROLES,
            issued=issued,
        )

    @r.post("/accounts/{department}")
    async def create_account(department: str, page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        try:
            await _in_thread(
                page.portal.create_account,
                page.person,
                department,
                str(form.get("username", "")),
                str(form.get("password", "")),
                parse_roles(str(r) for r in form.getlist("roles")),
                str(form.get("display_name", "")),
            )
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect(f"/accounts?department={department}")

    @r.post("/accounts/{department}/{username}/{change}")
    def change_account(
        department: str, username: str, change: str, page: Logged, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        _checked(page, csrf)
        if change not in ("disable", "enable"):
            return page.render("error.html", 404, message=f"no change {change!r}")
        try:
            page.portal.update_account(
                page.person, f"{department}/{username}", disabled=change == "disable"
            )
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect(f"/accounts?department={department}")

    @r.post("/accounts/{department}/tokens", response_class=HTMLResponse)
    async def issue_token(department: str, page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        try:
            days = int(str(form.get("days", "90")))
            _token, secret = await _in_thread(
                page.portal.issue_token,
                page.person,
                department,
                str(form.get("name", "")),
                parse_roles(str(r) for r in form.getlist("roles")),
                days,
            )
        except ValueError:
            return page.render("error.html", 422, message="days: a whole number")
        except PortalError as exc:
            raise page.fail(exc) from exc
        # Shown once, on this page; not in a URL (it would stay in the browser's history).
        return accounts(page, department=department, issued=secret)

    @r.post("/tokens/{token_id}/revoke")
    def revoke_token(token_id: str, page: Logged, csrf: Annotated[str, Form()] = "") -> Response:
        _checked(page, csrf)
        try:
            token = page.portal.revoke_token(page.person, token_id)
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect(f"/accounts?department={token.department}")

    return r


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking service call (a Kafka transaction, a password hash) off the event loop."""
    return await run_in_threadpool(fn, *args)


def _local(ts_ms: int) -> str:
    """An instant as China Standard Time, to the second."""
    at = dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.timezone(dt.timedelta(hours=8)))
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _end_of(value: str) -> dt.datetime | None:
    """The end of a form's date (China Standard Time), or ``None`` for no date."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    cst = dt.timezone(dt.timedelta(hours=8))
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=cst)


def _day(value: str) -> str:
    """A form's date as the start of that day in China Standard Time."""
    return f"{value}T00:00:00+08:00" if value else ""


def _login_form(page: Page, refused: PortalError | None = None) -> HTMLResponse:
    """The login page, with a fresh token for its form in a cookie of its own (the form and
    the cookie must match: another site can post the form, but not set the cookie)."""
    token = new_secret()
    departments = sorted(page.portal.catalog.departments.values(), key=lambda d: d.id)
    response = page.render(
        "login.html",
        refused.status if refused else 200,
        login_csrf=token,
        departments=departments,
        flash=refused.message if refused else None,
        flash_kind="error",
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        secure=page.portal.settings.portal.secure_cookies,
        samesite="strict",
    )
    return response


def install_page_errors(app: FastAPI) -> None:
    """A page refused: back to the login page when not logged in, else the reason."""

    @app.exception_handler(PageError)
    def page_error(request: Request, exc: PageError) -> Response:
        if isinstance(exc.error, UnauthenticatedError) and exc.error.code != "BAD_CREDENTIALS":
            return _redirect("/login")
        page = Page(request, None, None)
        page.lang = exc.lang
        if exc.error.code in ("BAD_CREDENTIALS", "LOCKED", "RATE_LIMITED"):
            return _login_form(page, exc.error)
        return page.render("error.html", exc.error.status, message=exc.error.message)
