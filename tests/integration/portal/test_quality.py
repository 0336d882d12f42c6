"""Issue 23: the quality loop on the real broker. A consumer objects (through the SDK) to a record
it received; the provider investigates and accepts; the exchange sees the fix in the provider's
next version of the record (not in a version that leaves the objected field as it was); the
consumer reopens, the provider rejects, the consumer confirms. A step left past its deadline is
escalated to the operators."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.audit.trail import read_trail
from exchange.client import Change, DeliveryConsumer, PortalClient
from exchange.kafka.control import publish, read_all, read_table
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from tests.integration.portal.conftest import Caller, PortalEnv, Replica
from tests.integration.routing.conftest import EXCHANGE, change_value, person

pytestmark = pytest.mark.integration


class QualityEnv:
    """The portal's exchange with a quality worker (rounds every second) and a third replica
    whose objection steps are due 3 s after they begin."""

    def __init__(self, env: PortalEnv) -> None:
        self.env = env
        base = env.project.exchange_yaml.read_text(encoding="utf-8")
        config = env.project.root / "config"
        worker_yaml = config / "quality.yaml"
        worker_yaml.write_text(
            base + "quality:\n  interval_s: 1\n  nice: 0\n  metrics_port: 0\n", encoding="utf-8"
        )
        quick_yaml = config / "quick.yaml"
        quick_yaml.write_text(
            base + "quality:\n  deadlines: {filed: '3 seconds'}\n", encoding="utf-8"
        )
        self.log = env.project.root / "quality.log"
        self.worker = subprocess.Popen(
            [
                str(EXCHANGE),
                "--config",
                str(worker_yaml),
                "quality",
                "run",
                "--name",
                f"{env.project.uid}-q",
                "--metrics-port",
                "0",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.quick = Replica(quick_yaml, f"{env.project.uid}-r3", env.project.root / "r3.log")
        self.quick.wait_ready()

    def codec(self) -> AvroCodec:
        latest = Registry(self.env.settings.registry).latest(self.env.project.subject)
        assert latest is not None
        return AvroCodec(latest.schema_id, latest.schema)

    def publish_version(self, row: dict[str, Any]) -> None:
        value = change_value(self.codec(), row, self.env.provider, "u")
        publish(
            self.env.settings.kafka, self.env.project.source_topic, [(row["citizen_id"], value)]
        )

    def measured_records(self) -> int:
        """The records the worker has read of the entry, as its last measures say."""
        table = read_table(self.env.settings.kafka, self.env.settings.topics.quality_measures)
        raw = table.get(self.env.entry)
        return -1 if raw is None else int(json.loads(raw)["records"])

    def stop(self) -> None:
        self.quick.stop()
        if self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(timeout=30)


@pytest.fixture(scope="module")
def quality(staffed: PortalEnv) -> Iterator[QualityEnv]:
    q = QualityEnv(staffed)
    yield q
    q.stop()


def _wait(
    what: str, check: Callable[[], Any], timeout: float = 60.0, log: Path | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log else ""
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{tail}")


def _granted(env: PortalEnv) -> str:
    applicant = env.person(env.consumer, "c_applicant")
    made = applicant.post("/api/v1/grants", env.request_body())
    assert made.status_code == 201, made.text
    grant_id = str(made.json()["id"])
    approver = env.person(env.provider, "p_approver")
    assert approver.post(f"/api/v1/grants/{grant_id}/approve", {}).status_code == 200
    return grant_id


def _token(env: PortalEnv) -> str:
    admin = env.person(env.consumer, "c_admin")
    issued = admin.post(
        f"/api/v1/departments/{env.consumer}/tokens",
        {"name": "质量异议系统", "roles": ["applicant"], "days": 30},
    )
    assert issued.status_code == 201, issued.text
    return str(issued.json()["token"])


def _state(caller: Caller, objection_id: str) -> str:
    answer = caller.get(f"/api/v1/objections/{objection_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["state"])


def test_an_objection_goes_through_every_state(quality: QualityEnv) -> None:
    env = quality.env
    _granted(env)
    env.publish_people(5)
    env.start_router()
    portal = PortalClient(env.r1.url, _token(env))
    received: list[Change[Any]] = []
    with DeliveryConsumer(env.settings, env.consumer, [env.entry], portal=portal) as consumer:
        consumer.run(received.append, max_changes=5, idle_timeout_s=90)
        assert len(received) == 5
        # The grant delivers citizen_id hashed (a sensitive field): the key is its hash. The
        # names of the five people differ.
        row = person(5000, "140602")
        wrong = next(c for c in received if c.value and c.value["name"] == row["name"])
        assert wrong.key != row["citizen_id"]
        filed = consumer.file_objection(wrong, ["name"], "姓名与户籍档案不符", "户籍档案 2026-118")
    oid = str(filed["id"])
    assert (filed["state"], filed["consumer"], filed["provider"]) == (
        "filed",
        env.consumer,
        env.provider,
    )
    assert "located" not in filed  # where it is in the source is not the consumer's to know

    provider = env.person(env.provider, "p_approver")
    inbox = provider.get("/api/v1/notices").json()
    assert any(n["kind"] == "objection_filed" and n["objection_id"] == oid for n in inbox)
    # The bystander does not even learn it exists.
    bystander = env.person(env.bystander, "b_approver")
    assert bystander.get(f"/api/v1/objections/{oid}").status_code == 404
    assert provider.post(f"/api/v1/objections/{oid}/investigate", {}).status_code == 200
    accepted = provider.post(f"/api/v1/objections/{oid}/accept", {"note": "核实有误，将更正"})
    assert accepted.status_code == 200, accepted.text

    # A new version that leaves the name as it was is not the fix ...
    records_before = quality.measured_records()
    quality.publish_version({**row, "address": "朔州市新地址"})
    _wait(
        "the worker reads the new version",
        lambda: quality.measured_records() > records_before,
        log=quality.log,
    )
    assert _state(provider, oid) == "accepted"
    # ... the one that corrects it is, found by the exchange itself.
    quality.publish_version({**row, "address": "朔州市新地址", "name": "张正确"})
    _wait("the fix is found", lambda: _state(provider, oid) == "fixed", log=quality.log)

    applicant = env.person(env.consumer, "c_applicant")
    told = applicant.get("/api/v1/notices").json()
    assert any(n["kind"] == "objection_changed" and n["objection_id"] == oid for n in told)
    assert applicant.post(f"/api/v1/objections/{oid}/reopen", {}).status_code == 422
    reopened = applicant.post(f"/api/v1/objections/{oid}/reopen", {"note": "民族字段仍不对"})
    assert reopened.json()["round"] == 2
    refused = provider.post(f"/api/v1/objections/{oid}/reject", {"note": "经核实登记无误"})
    assert refused.status_code == 200, refused.text
    assert applicant.post(f"/api/v1/objections/{oid}/reject", {"note": "x"}).status_code == 403
    confirmed = applicant.post(f"/api/v1/objections/{oid}/confirm", {})
    assert confirmed.status_code == 200, confirmed.text
    history = confirmed.json()["history"]
    assert [s["state"] for s in history] == [
        "filed",
        "investigating",
        "accepted",
        "fixed",
        "filed",
        "rejected",
        "confirmed",
    ]
    assert history[3]["by"] == "exchange" and "name" in history[3]["note"]
    assert history[0]["by"].startswith("token:")

    kinds = [
        e.event.kind
        for e in read_trail(env.settings)
        if e.event is not None and json.loads(e.event.details or "{}").get("objection") == oid
    ]
    for kind in (
        "quality.objection.filed",
        "quality.objection.investigating",
        "quality.objection.accepted",
        "quality.objection.located",
        "quality.objection.fixed",
        "quality.objection.reopened",
        "quality.objection.rejected",
        "quality.objection.confirmed",
    ):
        assert kind in kinds, (kind, kinds)


def test_a_missed_deadline_escalates_to_the_operators(quality: QualityEnv) -> None:
    env = quality.env
    grant_id = _granted(env)
    applicant = env.person(env.consumer, "c_applicant", quality.quick)
    filed = applicant.post(
        "/api/v1/objections",
        {
            "grant_id": grant_id,
            "key": person(5001, "140602")["citizen_id"],
            "fields": ["region_code"],
            "problem": "行政区划代码已撤销",
        },
    )
    assert filed.status_code == 201, filed.text
    oid = filed.json()["id"]
    ops = env.person(env.ops, "root")
    escalated = _wait(
        "the late step is escalated",
        lambda: ops.get(f"/api/v1/objections/{oid}").json().get("escalated_at"),
        log=quality.log,
    )
    assert escalated
    notices = ops.get("/api/v1/notices").json()
    assert any(n["kind"] == "objection_escalated" and n["objection_id"] == oid for n in notices)
    provider = env.person(env.provider, "p_approver")
    assert any(
        n["kind"] == "objection_escalated" and n["objection_id"] == oid
        for n in provider.get("/api/v1/notices").json()
    )
    # Once per step: the provider's answer starts a new step, with a new deadline.
    moved = provider.post(f"/api/v1/objections/{oid}/investigate", {}).json()
    assert moved["escalated_at"] is None and moved["state"] == "investigating"


def test_who_may_object(quality: QualityEnv) -> None:
    env = quality.env
    grant_id = _granted(env)
    body = {"grant_id": grant_id, "key": "x", "fields": ["name"], "problem": "错误"}
    viewer = env.person(env.consumer, "c_viewer")
    assert viewer.post("/api/v1/objections", body).json()["error"]["code"] == "NOT_APPLICANT"
    bystander = env.person(env.bystander, "b_approver")
    assert bystander.post("/api/v1/objections", body).status_code == 404
    applicant = env.person(env.consumer, "c_applicant")
    wrong_field = applicant.post("/api/v1/objections", {**body, "fields": ["phone"]})
    assert wrong_field.json()["error"]["code"] == "BAD_FIELDS"


def _quarter(now: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    """This quarter in China Standard Time, computed here apart from the report's own code."""
    cst = dt.timezone(dt.timedelta(hours=8))
    local = now.astimezone(cst)
    q = (local.month - 1) // 3
    start = dt.datetime(local.year, 3 * q + 1, 1, tzinfo=cst)
    end = dt.datetime(local.year + (q == 3), (3 * q + 3) % 12 + 1, 1, tzinfo=cst)
    return f"{local.year}Q{q + 1}", start, end


def test_the_assessment_report_equals_the_topics(quality: QualityEnv) -> None:
    env = quality.env
    s = env.settings
    label, start, end = _quarter(dt.datetime.now(dt.UTC))
    inside = lambda at: start <= dt.datetime.fromisoformat(at) < end  # noqa: E731
    _wait(
        "the worker's score history names the provider",
        lambda: any(
            json.loads(m.value or b"{}").get("department") == env.provider
            for m in read_all(s.kafka, s.topics.quality_scores)
        ),
        log=quality.log,
    )
    made = subprocess.run(
        [
            str(EXCHANGE),
            "--config",
            str(env.project.exchange_yaml),
            "report",
            "assessment",
            "--period",
            label,
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = {r["department"]: r for r in csv.DictReader(io.StringIO(made.stdout))}

    # The same figures, straight from the topics.
    grants = [json.loads(v) for v in read_table(s.kafka, s.topics.grants).values()]
    asked = [g for g in grants if g["request"]["entry"] == env.entry and inside(g["requested_at"])]
    decided = [
        (
            dt.datetime.fromisoformat(g["decision"]["at"])
            - dt.datetime.fromisoformat(g["requested_at"])
        ).total_seconds()
        / 3600
        for g in asked
        if g.get("decision")
    ]
    objections = [
        json.loads(v)
        for v in read_table(s.kafka, s.topics.objections).values()
        if json.loads(v)["provider"] == env.provider
    ]
    raised = [o for o in objections if inside(o["history"][0]["at"])]
    # Settled by the provider (fixed or rejected): from filing to its last such answer.
    resolved = [
        (
            dt.datetime.fromisoformat(
                [s for s in o["history"] if s["state"] in ("fixed", "rejected")][-1]["at"]
            )
            - dt.datetime.fromisoformat(o["history"][0]["at"])
        ).total_seconds()
        / 3600
        for o in raised
        if o["state"] in ("fixed", "rejected", "confirmed")
    ]
    shared = 0
    for e in read_trail(s):
        ev = e.event
        if ev is None or ev.kind != "delivery.receipt":
            continue
        if not start.timestamp() * 1000 <= ev.ts_ms < end.timestamp() * 1000:
            continue
        details = json.loads(ev.details or "{}")
        rows = details.get("receipts") or [{**details, "entry": ev.entry}]
        shared += sum(int(r.get("count") or 0) for r in rows if r.get("entry") == env.entry)
    scores = [json.loads(m.value or b"{}") for m in read_all(s.kafka, s.topics.quality_scores)]
    own = [
        r["score"]
        for r in scores
        if r.get("entry") is None and r["department"] == env.provider and inside(r["at"])
    ]

    row = report[env.provider]
    assert (row["entries"], row["with_data"], row["collection_rate"]) == ("1", "1", "1.0")
    assert int(row["requests"]) == len(asked) >= 3
    assert int(row["decided"]) == len(decided)
    assert float(row["median_decision_h"]) == pytest.approx(statistics.median(decided), abs=1e-3)
    assert int(row["objections"]) == len(raised) >= 2
    assert int(row["resolved"]) == len(resolved) == 1
    assert float(row["median_resolve_h"]) == pytest.approx(statistics.median(resolved), abs=1e-3)
    assert int(row["shared_records"]) == shared >= 5
    assert float(row["quality"]) == pytest.approx(sum(own) / len(own), abs=1e-3)
    assert row["rank"] == "1"
    # A department that provides nothing is listed, not ranked.
    assert report[env.consumer]["entries"] == "0" and report[env.consumer]["rank"] == ""


def test_a_department_sees_its_entrys_score_history(quality: QualityEnv) -> None:
    env = quality.env
    provider = env.person(env.provider, "p_approver")
    path = f"/api/v1/catalog/{env.entry}/quality/history"
    rows = _wait(
        "the portal reads the score history",
        lambda: (a := provider.get(path)).status_code == 200 and a.json(),
        log=quality.log,
    )
    # Each row with the parts that applied then (completeness only once the entry has data).
    assert {"timeliness", "objections"} <= set(rows[0]["parts"])
    assert 0 <= rows[0]["score"] <= 100
    current = provider.get(f"/api/v1/catalog/{env.entry}/quality").json()
    assert current["entry"] == env.entry and "null_share" in current
    # A department with no grant on the entry sees neither.
    bystander = env.person(env.bystander, "b_approver")
    assert bystander.get(path).status_code == 404
    assert bystander.get(f"/api/v1/catalog/{env.entry}/quality").status_code == 404
