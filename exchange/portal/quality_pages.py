"""The portal's pages for data quality: objections (file from a grant, answer, confirm or
reopen), and the operators' assessment report (printable)."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from exchange.portal import policy
from exchange.portal.errors import PortalError
from exchange.portal.pages import Logged, _in_thread, _local, _posted, _redirect
from exchange.quality.objections import Objection
from exchange.quality.report import COLUMNS, as_html, cells

__all__ = ["quality_router"]

#: The actions each side may take in each state, as the page offers them.
_OFFERED: dict[tuple[str, str], tuple[str, ...]] = {
    ("provider", "filed"): ("investigate", "accept", "reject"),
    ("provider", "investigating"): ("accept", "reject"),
    ("consumer", "fixed"): ("confirm", "reopen"),
    ("consumer", "rejected"): ("confirm", "reopen"),
}


def _view(o: Objection) -> dict[str, Any]:
    return {
        **o.model_dump(exclude={"located"}),
        "filed_local": _local(int(o.filed_at.timestamp() * 1000)),
        "due_local": _local(int(o.due_at.timestamp() * 1000)) if o.due_at else "",
        "steps": [
            {**s.model_dump(), "at_local": _local(int(s.at.timestamp() * 1000))} for s in o.history
        ],
    }


def quality_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/objections", response_class=HTMLResponse)
    def objections(page: Logged, state: str = "") -> Response:
        rows = [_view(o) for o in page.portal.objections.list(page.person, state or None)]
        return page.render("objections.html", objections=rows, state=state)

    @r.post("/objections")
    async def file_objection(page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        grant_id = str(form.get("grant_id", ""))
        try:
            grant = page.portal.grant(page.person, grant_id)
            made = await _in_thread(
                lambda: page.portal.objections.file(
                    page.person,
                    grant,
                    str(form.get("key", "")),
                    [str(f) for f in form.getlist("fields")],
                    str(form.get("problem", "")),
                    str(form.get("evidence", "")),
                    str(form.get("event", "")) or None,
                )
            )
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect(f"/objections/{made.id}")

    @r.get("/objections/{objection_id}", response_class=HTMLResponse)
    def objection(objection_id: str, page: Logged) -> Response:
        try:
            found = page.portal.objections.get(page.person, objection_id)
        except PortalError as exc:
            raise page.fail(exc) from exc
        side = "watcher"  # an operator, or someone without the role to act
        with contextlib.suppress(PortalError):
            side = policy.objection_side(page.person, found, page.portal.operators)
        offered = _OFFERED.get((side, found.state), ())
        return page.render("objection.html", o=_view(found), offered=offered)

    @r.post("/objections/{objection_id}/{action}")
    async def act(objection_id: str, action: str, page: Logged, request: Request) -> Response:
        form = await _posted(page, request)
        note = str(form.get("note", ""))
        try:
            await _in_thread(page.portal.objections.act, page.person, objection_id, action, note)
        except PortalError as exc:
            raise page.fail(exc) from exc
        return _redirect(f"/objections/{objection_id}")

    @r.get("/reports/assessment", response_class=HTMLResponse)
    async def assessment(page: Logged, period: str = "", printable: str = "") -> Response:
        period = period or _this_quarter()
        try:
            when, rows = await _in_thread(page.portal.assessment, page.person, period)
        except PortalError as exc:
            raise page.fail(exc) from exc
        if printable:
            return HTMLResponse(as_html(rows, when, dt.datetime.now(dt.UTC)))
        return page.render(
            "assessment.html",
            period=when,
            headings=[h for h, _n in COLUMNS],
            rows=[cells(row) for row in rows],
        )

    return r


def _this_quarter() -> str:
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
    return f"{now.year}Q{(now.month - 1) // 3 + 1}"
