"""Issue 23: each entry's measures, from its stream, on the real broker. An entry whose last
change is older than its update cycle allows is flagged late; a declared cross-entry check
(多源核验) counts exactly the records the test planted to fail it; completeness and validity
are the shares the test planted; the scores reach their history and the metrics."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.config import ExchangeSettings
from exchange.dlq import DeadLetter
from exchange.kafka.control import read_all, read_table
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from tests.conftest import Project
from tests.integration.conftest import IsolatedProject
from tests.integration.routing.conftest import EXCHANGE, change_value, person

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


class MeasuredExchange:
    """Two entries of one provider: people (daily) and insured (monthly), insured declaring
    that each citizen_id it holds is in people."""

    def __init__(self, project: Project) -> None:
        p = self.project = IsolatedProject(project)
        self.people, self.insured = p.entry_id, f"{p.uid}.insured"
        with (p.config / "catalog" / f"{p.uid}.yaml").open("a", encoding="utf-8") as f:
            f.write(
                f"""  - id: {self.insured}
    title: 测试参保
    provider: {p.uid}
    schema: {p.uid}/people.avsc
    key: citizen_id
    sharing: conditional
    update_cycle: monthly
    partitions: 1
    checks:
      - {{id: in_people, title: 参保人员在人口库中, field: citizen_id, exists_in: {self.people}}}
"""
            )
        with p.exchange_yaml.open("a", encoding="utf-8") as f:
            f.write("quality:\n  interval_s: 1\n  nice: 0\n  metrics_port: 0\n")
        self.settings: ExchangeSettings = p.settings()
        key = self.settings.resolve(self.settings.audit.key_file or p.root / "audit.key")
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(uuid.uuid4().hex * 2 + "\n", encoding="ascii")
        apply_catalog(load_catalog(self.settings).require_valid(), self.settings)
        latest = Registry(self.settings.registry).latest(p.subject)
        assert latest is not None
        self.codec = AvroCodec(latest.schema_id, latest.schema)
        self.producer = Producer(self.settings.kafka.client_config(**{"acks": "all"}))
        self.log = p.root / "quality.log"
        self.worker: subprocess.Popen[bytes] | None = None

    def publish(self, entry: str, row: dict[str, Any], ts_ms: int, op: str = "u") -> None:
        """A change as the provider's connector publishes it, stamped ``ts_ms``."""
        value = change_value(self.codec, None if op == "d" else row, self.project.uid, op)
        topic = f"src.{entry}"
        self.producer.produce(topic, key=row["citizen_id"], value=value, timestamp=ts_ms)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            [
                str(EXCHANGE),
                "--config",
                str(self.project.exchange_yaml),
                "quality",
                "run",
                "--name",
                f"{self.project.uid}-q",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def measures(self) -> dict[str, dict[str, Any]]:
        table = read_table(self.settings.kafka, self.settings.topics.quality_measures)
        return {k: json.loads(v) for k, v in table.items()}

    def metrics(self) -> str:
        found = re.search(r"/metrics on port (\d+)", self.log.read_text(encoding="utf-8"))
        assert found, self.log.read_text(encoding="utf-8")
        return httpx.get(f"http://127.0.0.1:{found.group(1)}/metrics", timeout=10).text

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(timeout=30)


@pytest.fixture
def measured(project: Project, platform: ExchangeSettings) -> Iterator[MeasuredExchange]:
    m = MeasuredExchange(project)
    yield m
    m.stop()


def test_late_entries_checks_completeness_and_validity(measured: MeasuredExchange) -> None:
    m = measured
    now_ms = int(time.time() * 1000)
    people = [{**person(i, "140602"), "phone": None if i < 2 else "13800000000"} for i in range(6)]
    # people last changed three days ago: late for a daily cycle (1.5 days at most).
    for row in people:
        m.publish(m.people, row, now_ms - 3 * DAY_MS - 60_000)
    m.publish(m.people, people[5], now_ms - 3 * DAY_MS, op="d")
    strangers = [person(100 + i, "140603") for i in range(2)]
    insured = [people[0], people[1], people[2], people[5], *strangers]
    for row in insured:
        m.publish(m.insured, row, now_ms - 60_000)
    m.flush()
    # A row the connector refused (a dead letter as connectors write them).
    letter = DeadLetter(
        origin="connector",
        reason="invalid_row",
        errors=[{"field": "citizen_id", "rule": "citizen_id"}],
        entry=m.people,
        department=m.project.uid,
        position="people.csv:7",
        data={"citizen_id": "bad"},
    )
    m.producer.produce(m.settings.topics.dlq, value=letter.encode(), headers=letter.headers())
    m.flush()
    m.start_worker()

    deadline = time.monotonic() + 90
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        found = m.measures()
        people_read = found.get(m.people, {})
        if (
            people_read.get("rejected")
            and people_read.get("records") == len(people)
            and found.get(m.insured, {}).get("records") == len(insured)
        ):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no measures: {found}\n{m.log.read_text()[-3000:]}")

    p, i = found[m.people], found[m.insured]
    assert (p["records"], p["deletes"]) == (6, 1)
    assert p["late"] is True and p["age_s"] >= 3 * 86_400 - 5
    assert i["late"] is False
    assert p["null_share"]["phone"] == pytest.approx(2 / 6)
    assert p["null_share"]["citizen_id"] == 0.0
    assert p["rejected"] == {"invalid_row": 1}
    assert p["parts"]["validity"] == pytest.approx(1 - 1 / 8)
    # The check: the two strangers and the person deleted from people fail it, nobody else.
    [check] = i["checks"]
    planted = {strangers[0]["citizen_id"], strangers[1]["citizen_id"], people[5]["citizen_id"]}
    assert (check["check"], check["checked"], check["failing"]) == ("in_people", 6, 3)
    assert set(check["samples"]) == planted
    assert p["score"] < i["score"]

    # The score history is written right after the measures.
    def history() -> list[dict[str, Any]]:
        topic = m.settings.topics.quality_scores
        return [json.loads(r.value or b"{}") for r in read_all(m.settings.kafka, topic)]

    deadline = time.monotonic() + 30
    while not {h["entry"] for h in history()} >= {m.people, m.insured}:
        assert time.monotonic() < deadline, history()
        time.sleep(0.5)
    assert any(h["entry"] is None and h["department"] == m.project.uid for h in history())

    metrics = m.metrics()
    assert f'exchange_quality_late{{entry="{m.people}"}} 1.0' in metrics
    assert f'exchange_quality_late{{entry="{m.insured}"}} 0.0' in metrics
    failing = f'exchange_quality_check_failing_records{{check="in_people",entry="{m.insured}"}} 3.0'
    assert failing in metrics
    # Samples are values of the providers' records: never a label.
    assert strangers[0]["citizen_id"] not in metrics
