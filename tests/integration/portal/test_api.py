"""Issue 22: the portal's API against two running replicas on the real broker. Every rule is
tried allowed and refused, as the service enforces it (never the caller's claim)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from exchange.audit.trail import read_trail
from tests.integration.portal.conftest import PASSWORD, Caller, PortalEnv

pytestmark = pytest.mark.integration


def _error(answer: Any) -> str:
    code: str = answer.json()["error"]["code"]
    return code


def _request(env: PortalEnv, who: Caller, **changes: Any) -> Any:
    return who.post("/api/v1/grants", env.request_body(**changes))


def test_the_session_cookie_is_http_only_secure_and_strict(staffed: PortalEnv) -> None:
    c = staffed.person(staffed.consumer, "c_viewer")
    cookie = c.set_cookie.lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    me = c.get("/api/v1/me").json()
    assert me == {
        "kind": "person",
        "name": f"{staffed.consumer}/c_viewer",
        "department": staffed.consumer,
        "roles": ["viewer"],
    }


def test_wrong_passwords_are_refused_alike_and_lock_the_account(staffed: PortalEnv) -> None:
    env = staffed
    c = env.caller()
    unknown = c.login(env.consumer, "nobody")
    wrong = c.login(env.consumer, "c_admin", "wrong password!")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    for _ in range(4):
        c.login(env.consumer, "c_admin", "wrong password!")
    locked = c.login(env.consumer, "c_admin")  # even the right password now
    assert locked.status_code == 429 and _error(locked) == "LOCKED"


def test_a_viewer_may_not_request_and_an_applicant_may(staffed: PortalEnv) -> None:
    env = staffed
    viewer = env.person(env.consumer, "c_viewer")
    refused = _request(env, viewer)
    assert refused.status_code == 403 and _error(refused) == "NOT_APPLICANT"
    applicant = env.person(env.consumer, "c_applicant")
    made = _request(env, applicant)
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "requested"
    assert made.json()["requested_by"]["person"] == f"{env.consumer}/c_applicant"


def test_nobody_requests_for_another_department(staffed: PortalEnv) -> None:
    env = staffed
    other = env.person(env.bystander, "b_approver")
    refused = _request(env, env.person(env.consumer, "c_applicant"), consumer=env.bystander)
    assert refused.status_code == 403 and _error(refused) == "OTHER_DEPARTMENT"
    assert other.get("/api/v1/grants").json() == []


def test_the_same_validation_as_the_cli(staffed: PortalEnv) -> None:
    env = staffed
    bad = _request(env, env.person(env.consumer, "c_applicant"), fields=["citizen_id", "nope"])
    assert bad.status_code == 422
    assert f"fields: {env.entry} has no field 'nope'" in bad.json()["error"]["message"]


def test_only_an_approver_of_the_provider_decides(staffed: PortalEnv) -> None:
    env = staffed
    made = _request(env, env.person(env.consumer, "c_applicant")).json()
    gid = made["id"]
    cases = [
        (env.person(env.provider, "p_applicant"), 403, "NOT_APPROVER"),  # an applicant
        (env.person(env.consumer, "c_approver"), 403, "NOT_PROVIDER"),  # the consumer's own
        (env.person(env.bystander, "b_approver"), 404, "NO_SUCH_GRANT"),  # a stranger
    ]
    for who, status, code in cases:
        answer = who.post(f"/api/v1/grants/{gid}/approve", {"note": "ok"})
        assert (answer.status_code, _error(answer)) == (status, code)
    approver = env.person(env.provider, "p_approver")
    assert [g["id"] for g in approver.get("/api/v1/inbox").json()].count(gid) == 1
    no_reason = approver.post(f"/api/v1/grants/{gid}/reject", {"reason": " "})
    assert no_reason.status_code == 422 and _error(no_reason) == "REASON_REQUIRED"
    missing = approver.post(f"/api/v1/grants/{gid}/reject", {})
    assert missing.status_code == 422
    approved = approver.post(f"/api/v1/grants/{gid}/approve", {"note": "依法核验"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"
    assert approved.json()["decision"]["by"]["person"] == f"{env.provider}/p_approver"
    assert gid not in [g["id"] for g in approver.get("/api/v1/inbox").json()]


def test_a_rejection_with_its_reason(staffed: PortalEnv) -> None:
    env = staffed
    gid = _request(env, env.person(env.consumer, "c_applicant")).json()["id"]
    rejected = env.person(env.provider, "p_approver").post(
        f"/api/v1/grants/{gid}/reject", {"reason": "无相关法律依据"}
    )
    assert rejected.status_code == 200 and rejected.json()["decision"]["note"] == "无相关法律依据"


def test_the_consumer_ends_its_own_grant_early(staffed: PortalEnv) -> None:
    env = staffed
    applicant = env.person(env.consumer, "c_applicant")
    gid = _request(env, applicant).json()["id"]
    env.person(env.provider, "p_approver").post(f"/api/v1/grants/{gid}/approve", {})
    viewer = env.person(env.consumer, "c_viewer")
    refused = viewer.post(f"/api/v1/grants/{gid}/revoke", {})
    assert refused.status_code == 403
    ended = applicant.post(f"/api/v1/grants/{gid}/revoke", {"note": "项目结束"})
    assert ended.status_code == 200 and ended.json()["state"] == "revoked"


def test_a_department_never_sees_another_departments_grants(staffed: PortalEnv) -> None:
    env = staffed
    gid = _request(env, env.person(env.consumer, "c_applicant")).json()["id"]
    stranger = env.person(env.bystander, "b_approver")
    assert stranger.get(f"/api/v1/grants/{gid}").status_code == 404
    # Nor its audit records.
    assert stranger.get(f"/api/v1/grants/{gid}/activity").status_code == 404
    consumer = env.person(env.consumer, "c_viewer")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        history = consumer.get(f"/api/v1/grants/{gid}/activity").json()["history"]
        if history:
            break
        time.sleep(0.5)
    assert [h["kind"] for h in history] == ["grant.requested"]
    assert gid not in [g["id"] for g in stranger.get("/api/v1/grants").json()]
    for side, username in (("consumer", "c_viewer"), ("provider", "p_approver")):
        seen = env.person(getattr(env, side), username).get("/api/v1/grants").json()
        assert gid in [g["id"] for g in seen]
        assert all(
            env.consumer == g["request"]["consumer"] or g["request"]["entry"] == env.entry
            for g in seen
        )


def test_changes_with_a_cookie_need_the_csrf_token(staffed: PortalEnv) -> None:
    env = staffed
    applicant = env.person(env.consumer, "c_applicant")
    forged = applicant.post("/api/v1/grants", env.request_body(), csrf=False)
    assert forged.status_code == 403 and _error(forged) == "CSRF"
    applicant.csrf = "a-guess"
    assert _error(applicant.post("/api/v1/grants", env.request_body())) == "CSRF"


def test_sessions_expire_and_end_at_logout(staffed: PortalEnv) -> None:
    env = staffed
    # Logged in on one replica, used on the other: the replicas share sessions.
    short = env.person(env.consumer, "c_viewer", env.r2)
    elsewhere = Caller(env.r1.url)
    elsewhere.session, elsewhere.csrf = short.session, short.csrf
    assert elsewhere.get("/api/v1/me").status_code == 200
    time.sleep(3.5)  # r2's sessions last 3 s
    expired = elsewhere.get("/api/v1/me")
    assert expired.status_code == 401 and _error(expired) == "EXPIRED"
    person = env.person(env.consumer, "c_viewer")
    assert person.delete("/api/v1/session").status_code == 204
    gone = person.get("/api/v1/me")
    assert gone.status_code == 401 and _error(gone) == "NO_SESSION"


def test_department_tokens_act_for_their_department_only(staffed: PortalEnv) -> None:
    env = staffed
    applicant = env.person(env.consumer, "c_applicant")  # not an administrator
    refused = applicant.post(
        f"/api/v1/departments/{env.consumer}/tokens", {"name": "低保系统", "roles": ["applicant"]}
    )
    assert refused.status_code == 403 and _error(refused) == "NOT_ADMIN"
    root = env.person(env.ops, "root")
    issued = root.post(
        f"/api/v1/departments/{env.consumer}/tokens",
        {"name": "低保系统", "roles": ["applicant", "viewer"], "days": 30},
    )
    assert issued.status_code == 201, issued.text
    system = env.caller()
    system.token = issued.json()["token"]
    assert system.get("/api/v1/me").json()["name"] == f"token:{issued.json()['id']}"
    # No CSRF for a token: a browser never sends the Authorization header by itself.
    made = system.post("/api/v1/grants", env.request_body(), csrf=False)
    assert made.status_code == 201, made.text
    elsewhere = system.post("/api/v1/grants", env.request_body(consumer=env.bystander))
    assert elsewhere.status_code == 403 and _error(elsewhere) == "OTHER_DEPARTMENT"
    decide = system.post(f"/api/v1/grants/{made.json()['id']}/approve", {})
    assert decide.status_code == 403
    listed = root.get(f"/api/v1/departments/{env.consumer}/tokens").json()
    assert "token" not in listed[0] and "secret_hash" not in listed[0]
    revoked = root.delete(f"/api/v1/tokens/{issued.json()['id']}")
    assert revoked.status_code == 200
    dead = system.get("/api/v1/me")
    assert dead.status_code == 401 and _error(dead) == "TOKEN_REVOKED"
    forged = env.caller()
    forged.token = f"exk_{issued.json()['id']}_guessed"
    assert _error(forged.get("/api/v1/me")) == "BAD_TOKEN"


def test_administrators_manage_their_own_department(staffed: PortalEnv) -> None:
    env = staffed
    b_admin = env.person(env.bystander, "b_admin")
    body = {"username": "intruder", "password": PASSWORD, "roles": ["approver"]}
    refused = b_admin.post(f"/api/v1/departments/{env.provider}/accounts", body)
    assert refused.status_code == 403 and _error(refused) == "NOT_ADMIN"
    operator = b_admin.post(
        f"/api/v1/departments/{env.bystander}/accounts",
        {**body, "username": "b_ops", "roles": ["operator"]},
    )
    assert operator.status_code == 422 and _error(operator) == "BAD_ROLES"
    weak = b_admin.post(
        f"/api/v1/departments/{env.bystander}/accounts",
        {**body, "username": "b_new", "password": "short"},
    )
    assert weak.status_code == 422 and _error(weak) == "WEAK_PASSWORD"
    made = b_admin.post(
        f"/api/v1/departments/{env.bystander}/accounts", {**body, "username": "b_new"}
    )
    assert made.status_code == 201 and "password_hash" not in made.json()
    newcomer = env.person(env.bystander, "b_new")
    disabled = b_admin.patch(
        f"/api/v1/departments/{env.bystander}/accounts/b_new", {"disabled": True}
    )
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert newcomer.get("/api/v1/me").status_code == 401
    assert env.caller().login(env.bystander, "b_new").status_code == 401


def test_every_login_failure_and_change_is_on_the_portals_audit_chain(staffed: PortalEnv) -> None:
    env = staffed
    env.person(env.consumer, "c_viewer")
    env.caller().login(env.consumer, "c_viewer", "not the password")
    kinds: dict[str, int] = {}
    actors: set[str] = set()
    for read in read_trail(env.settings):
        event = read.event
        if event is None or not event.chain_id.startswith(f"portal.{env.project.uid}-"):
            continue
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
        actors.add(event.actor)
        assert PASSWORD not in str(event.details)
    for kind in (
        "portal.login",
        "portal.login_failed",
        "portal.account.created",
        "grant.requested",
        "grant.approved",
        "grant.rejected",
        "grant.revoked",
        "portal.token.issued",
        "portal.token.revoked",
        "portal.logout",
    ):
        assert kinds.get(kind, 0) >= 1, (kind, kinds)
    assert f"{env.consumer} ({env.consumer}/c_applicant)" in actors


def test_a_need_is_posted_seen_by_all_and_answered_by_the_named_holder(staffed: PortalEnv) -> None:
    env = staffed
    applicant = env.person(env.consumer, "c_applicant")
    viewer = env.person(env.consumer, "c_viewer")
    body = {
        "title": "人口出生日期",
        "purpose": "老年人补贴核对",
        "fields": ["citizen_id", "birth_date"],
        "holder": env.provider,
    }
    refused = viewer.post("/api/v1/demands", body)
    assert refused.status_code == 403 and _error(refused) == "NOT_APPLICANT"
    posted = applicant.post("/api/v1/demands", body)
    assert posted.status_code == 201, posted.text
    need = posted.json()
    assert need["state"] == "open" and need["department"] == env.consumer
    # The list is public to every department.
    stranger = env.person(env.bystander, "b_approver")
    assert need["id"] in [d["id"] for d in stranger.get("/api/v1/demands?state=open").json()]
    answer = {"outcome": "matched", "entry": env.entry}
    not_holder = stranger.post(f"/api/v1/demands/{need['id']}/answer", answer)
    assert not_holder.status_code == 403 and _error(not_holder) == "NOT_ANSWERER"
    holder = env.person(env.provider, "p_approver")
    no_reason = holder.post(f"/api/v1/demands/{need['id']}/answer", {"outcome": "declined"})
    assert no_reason.status_code == 422 and _error(no_reason) == "REASON_REQUIRED"
    wrong_entry = holder.post(
        f"/api/v1/demands/{need['id']}/answer", {"outcome": "matched", "entry": "no.such"}
    )
    assert wrong_entry.status_code == 422 and _error(wrong_entry) == "BAD_ENTRY"
    matched = holder.post(f"/api/v1/demands/{need['id']}/answer", answer)
    assert matched.status_code == 200, matched.text
    assert matched.json()["state"] == "matched" and matched.json()["entry"] == env.entry
    assert matched.json()["answered_by"] == f"{env.provider}/p_approver"
    again = holder.post(f"/api/v1/demands/{need['id']}/answer", answer)
    assert again.status_code == 409
    assert [d["state"] for d in viewer.get("/api/v1/demands").json() if d["id"] == need["id"]] == [
        "matched"
    ]


def test_an_approver_grants_less_than_asked_never_more(staffed: PortalEnv) -> None:
    env = staffed
    gid = _request(env, env.person(env.consumer, "c_applicant")).json()["id"]
    approver = env.person(env.provider, "p_approver")
    more = approver.post(
        f"/api/v1/grants/{gid}/approve", {"fields": ["citizen_id", "phone"], "note": "x"}
    )
    assert more.status_code == 422 and _error(more) == "NOT_NARROWER"
    less = approver.post(
        f"/api/v1/grants/{gid}/approve",
        {"fields": ["citizen_id", "region_code"], "note": "姓名不予提供"},
    )
    assert less.status_code == 200, less.text
    assert less.json()["request"]["fields"] == ["citizen_id", "region_code"]
    assert less.json()["state"] == "approved"
