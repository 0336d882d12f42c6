"""A department applies for data through the portal's API, and the provider approves it:
``python -m samples.portal_request URL PASSWORD_FILE``.

What the README's demo does: 民政局's applicant (mzj/wang) requests 人口基础信息 for 低保资格核查,
公安局's approver (gongan/li) finds it in the inbox and approves it; then mzj posts a need for
data not in the catalog (death registrations) naming 公安局, which accepts it for cataloguing.
Each logs in with a session cookie and sends the session's CSRF token with every change, as
the portal's pages do. Prints
each step; exit 0 when the grant ends up approved and the need accepted.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import httpx

CN = dt.timezone(dt.timedelta(hours=8))


class Session:
    def __init__(self, url: str, department: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        answer = self.http.post(
            "/api/v1/session",
            json={"department": department, "username": username, "password": password},
        )
        answer.raise_for_status()
        # The cookie is Secure; over plain HTTP on localhost it is sent by hand.
        cookie = answer.headers["set-cookie"].split(";")[0]
        self.headers = {"Cookie": cookie, "X-CSRF-Token": answer.json()["csrf_token"]}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, path, json=body, headers=self.headers)
        if answer.status_code >= 400:
            raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()


def main(url: str, password: str) -> int:
    today = dt.datetime.now(CN).replace(hour=0, minute=0, second=0, microsecond=0)
    wang = Session(url, "mzj", "wang", password)
    made = wang.call(
        "POST",
        "/api/v1/grants",
        {
            "entry": "gongan.resident_population",
            "fields": ["citizen_id", "name", "region_code"],
            "masks": {"citizen_id": {"kind": "hash"}},
            "purpose": "data_verification",
            "purpose_text": "低保资格核查（门户申请）",
            "legal_basis": "《社会救助暂行办法》第十一条",
            "valid_from": today.isoformat(),
            "valid_until": (today + dt.timedelta(days=90)).isoformat(),
        },
    )
    print(f"mzj/wang requested {made['id']}: {made['state']}")
    li = Session(url, "gongan", "li", password)
    waiting = [g["id"] for g in li.call("GET", "/api/v1/inbox")]
    found = "among them" if made["id"] in waiting else "NOT among them"
    print(f"gongan/li's inbox: {len(waiting)} request(s), {made['id']} {found}")
    done = li.call("POST", f"/api/v1/grants/{made['id']}/approve", {"note": "依法核验，同意"})
    print(f"gongan/li approved {done['id']}: {done['state']}")
    need = wang.call(
        "POST",
        "/api/v1/demands",
        {
            "title": "户籍人口死亡登记信息",
            "purpose": "停发已故人员低保待遇",
            "fields": ["citizen_id", "death_date"],
            "holder": "gongan",
        },
    )
    print(f"mzj/wang posted need {need['id']} on 供需对接清单 for gongan: {need['state']}")
    answered = li.call(
        "POST",
        f"/api/v1/demands/{need['id']}/answer",
        {"outcome": "accepted", "due": (today + dt.timedelta(days=30)).date().isoformat()},
    )
    print(f"gongan/li answered {need['id']}: {answered['state']}, catalogued by {answered['due']}")
    return 0 if done["state"] == "approved" and answered["state"] == "accepted" else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], Path(sys.argv[2]).read_text(encoding="utf-8").strip()))
