"""Issue 22: departments are told, in their inbox and by their webhooks (HMAC-signed, retried),
of requests filed and decided, and of grants about to end."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.audit.trail import read_trail
from exchange.portal.notices import sign
from tests.integration.portal.conftest import Caller, PortalEnv

pytestmark = pytest.mark.integration


class Receiver:
    """A department's webhook endpoint: answers 500 to the first POST, then 200."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.refused == 0:
                    receiver.refused += 1
                    self.send_response(500)
                else:
                    receiver.got.append((dict(self.headers.items()), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, kind: str, timeout: float = 60) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for headers, body in self.got:
                if json.loads(body)["kind"] == kind:
                    return headers, body
            time.sleep(0.3)
        raise AssertionError(f"no {kind} notice reached the webhook; got {self.got}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _inbox(who: Caller, kind: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for notice in who.get("/api/v1/notices").json():
            if notice["kind"] == kind:
                found: dict[str, Any] = notice
                return found
        time.sleep(0.5)
    raise AssertionError(f"no {kind} notice in the inbox")


def test_requests_and_decisions_reach_inboxes_and_signed_webhooks(
    staffed: PortalEnv, receiver: Receiver
) -> None:
    env = staffed
    root = env.person(env.ops, "root")
    answer = root.http.put(
        f"/api/v1/departments/{env.consumer}/webhook",
        json={"url": receiver.url},
        headers=root.headers(),
    )
    assert answer.status_code == 200, answer.text
    secret = answer.json()["secret"]
    viewer = env.person(env.consumer, "c_viewer")
    refused = viewer.http.put(
        f"/api/v1/departments/{env.consumer}/webhook",
        json={"url": receiver.url},
        headers=viewer.headers(),
    )
    assert refused.status_code == 403

    applicant = env.person(env.consumer, "c_applicant")
    gid = applicant.post("/api/v1/grants", env.request_body()).json()["id"]
    approver = env.person(env.provider, "p_approver")
    filed = _inbox(approver, "request_filed")
    assert filed["grant_id"] == gid and filed["link"] == "/inbox"
    approver.post(f"/api/v1/grants/{gid}/approve", {"note": "同意"})
    decided = _inbox(applicant, "request_decided")
    assert decided["grant_id"] == gid and "已同意" in decided["text"]
    # The other department's inbox holds none of it.
    stranger = env.person(env.bystander, "b_approver")
    assert all(n["grant_id"] != gid for n in stranger.get("/api/v1/notices").json())

    headers, body = receiver.wait_for("request_decided")
    assert receiver.refused == 1  # the first attempt was answered 500, and tried again
    assert headers["X-Exchange-Signature"] == sign(secret, headers["X-Exchange-Timestamp"], body)
    assert headers["X-Exchange-Notice"] == json.loads(body)["id"] == decided["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sent = [
            json.loads(r.event.details)
            for r in read_trail(env.settings)
            if r.event is not None and r.event.kind == "portal.webhook.sent"
        ]
        if any(s["notice"] == decided["id"] for s in sent):
            break
        time.sleep(1)
    assert any(s["notice"] == decided["id"] and s["attempts"] == 2 for s in sent)


def test_a_grant_ending_within_7_days_is_announced_to_both_sides(staffed: PortalEnv) -> None:
    env = staffed
    now = dt.datetime.now(dt.UTC)
    applicant = env.person(env.consumer, "c_applicant")
    body = env.request_body(valid_until=(now + dt.timedelta(days=3)).isoformat())
    gid = applicant.post("/api/v1/grants", body).json()["id"]
    approver = env.person(env.provider, "p_approver")
    approver.post(f"/api/v1/grants/{gid}/approve", {})
    for who in (applicant, approver):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            expiring = [
                n
                for n in who.get("/api/v1/notices").json()
                if n["kind"] == "grant_expiring" and n["grant_id"] == gid
            ]
            if expiring:
                break
            time.sleep(0.5)
        assert len(expiring) == 1, "announced once, whatever the replicas"
