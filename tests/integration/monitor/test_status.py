"""`exchange status --once --json` and `exchange monitor` on the sample exchange, end to end.

The sample catalog, grants and connectors (GBK CSV with bad rows, XLSX, SQLite) run against the
real broker and registry under topic names of their own, the router delivers, a consumer reads
part of its deliveries; the figures reported must match what is really on the topics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from exchange.audit.trail import read_trail
from exchange.catalog.load import load_catalog
from exchange.config import ExchangeSettings
from exchange.dlq import REASON_HEADER
from exchange.kafka.admin import Admin
from exchange.kafka.control import read_all
from exchange.routing.report import router_backlog
from tests.conftest import ROOT, Project
from tests.integration.conftest import rename_control_topics

EXCHANGE = Path(sys.executable).parent / "exchange"
CONNECTORS = ("gongan-population", "scjg-legal-entities", "rsj-social-insurance")


def _cli(project: Project, *args: str) -> list[str]:
    return [str(EXCHANGE), "--config", str(project.exchange_yaml), *args]


def _run(project: Project, *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        _cli(project, *args),
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"exchange {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _sample_exchange(root: Path) -> Project:
    """The repository's sample exchange, every topic and group renamed for this test alone."""
    uid = "s" + uuid.uuid4().hex[:8]
    shutil.copytree(ROOT / "config", root / "config")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    project = Project(root)
    text = project.exchange_yaml.read_text(encoding="utf-8")
    text = rename_control_topics(text, uid)
    text = text.replace("source_prefix: src.", f"source_prefix: src.{uid}.")
    text = text.replace("delivery_prefix: dlv.", f"delivery_prefix: dlv.{uid}.")
    text = text.replace("group_id: exchange-router", f"group_id: router-{uid}")
    project.exchange_yaml.write_text(text, encoding="utf-8")
    for name in CONNECTORS:
        # Any free port: the developer's own connectors may hold the sample's.
        project.edit(f"config/connectors/{name}.yaml", "  port: 94", "  port: 0  # was 94")
    work = root / ".exchange" / "connectors"
    for folder in ("gongan/inbox", "scjg/inbox", "rsj"):
        (work / folder).mkdir(parents=True)
    shutil.copy(ROOT / "samples/data/gongan/population.csv", work / "gongan/inbox")
    shutil.copy(ROOT / "samples/data/scjg/legal_entities.xlsx", work / "scjg/inbox")
    shutil.copy(ROOT / "samples/data/rsj/social_insurance.db", work / "rsj")
    return project


def _wait_caught_up(settings: ExchangeSettings, router: subprocess.Popen[bytes]) -> None:
    catalog = load_catalog(settings).require_valid()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert router.poll() is None, "the router exited"
        backlog = router_backlog(settings, catalog)
        if backlog.unrouted == 0 and backlog.backfilling == 0:
            return
        time.sleep(1)
    raise AssertionError("the router did not catch up in 180 s")


def _behind(settings: ExchangeSettings, group: str, topic: str) -> tuple[int, int]:
    """Offsets between the group's committed offsets and the ends, and committed records there."""
    consumer = Consumer(settings.kafka.client_config(**{"group.id": group}))
    try:
        count = len(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(count)], 30)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in range(count)
        }
    finally:
        consumer.close()
    offsets = {tp.partition: max(tp.offset, 0) for tp in committed}
    unread = sum(
        1
        for m in read_all(settings.kafka, topic, committed=True)
        if m.offset >= offsets[m.partition]
    )
    return sum(ends[p] - offsets[p] for p in range(count)), unread


def _on_topics(settings: ExchangeSettings, topic: str) -> int:
    return len(read_all(settings.kafka, topic, committed=True))


def _delivery_topics(settings: ExchangeSettings, consumer: str, entry: str) -> list[str]:
    """The consumer's delivery topics of the entry: one per active grant generation."""
    prefix = settings.topics.deliveries_of(consumer, entry)
    return sorted(t for t in Admin(settings.kafka).partition_counts() if t.startswith(prefix))


def test_status_reports_the_sample_exchange(platform: ExchangeSettings, tmp_path: Path) -> None:
    project = _sample_exchange(tmp_path)
    settings = project.settings()
    _run(project, "catalog", "apply")
    _run(project, "audit", "keygen")
    _run(project, "grants", "apply", "--by", "测试员")
    log = (tmp_path / "router.log").open("wb")
    router = subprocess.Popen(
        _cli(project, "router", "--worker-id", "st", "--metrics-port", "0"),
        cwd=project.root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    monitor: subprocess.Popen[bytes] | None = None
    try:
        for name in CONNECTORS:
            _run(project, "connector", "run", f"config/connectors/{name}.yaml", "--once")
        _wait_caught_up(settings, router)
        # mzj's system reads 5 of its deliveries and commits them: 30 of 35 remain as lag.
        _run(project, "consume", "gongan.resident_population", "--as", "mzj", "--max", "5")

        status = json.loads(_run(project, "status", "--once", "--json"))

        p = settings.topics.source_prefix
        sources = {s["entry"]: s for s in status["sources"]}
        for entry, rows in {
            "gongan.resident_population": 35,
            "scjg.legal_entity": 11,
            "rsj.social_insurance_enrolment": 20,
            "mzj.marriage_registration": 0,
        }.items():
            assert sources[entry]["records"] == rows == _on_topics(settings, p + entry), entry
            assert sources[entry]["router_lag"] == 0
        assert sources["gongan.resident_population"]["department"] == "gongan"

        delivered = {(x["consumer"], x["entry"]): x["records"] for x in status["deliveries"]}
        expected = {
            ("mzj", "gongan.resident_population"): 35,
            ("shuocheng_rsj", "gongan.resident_population"): 7,  # its county only
            ("swj", "scjg.legal_entity"): 11,
            ("zjj", "mzj.marriage_registration"): 0,
        }
        assert delivered == expected
        for (consumer, entry), n in expected.items():
            topics = _delivery_topics(settings, consumer, entry)
            assert sum(_on_topics(settings, t) for t in topics) == n

        # Lag is counted in offsets, which on a delivery topic include the markers of the
        # router's transactions: compared with the group's own offsets, and the records behind
        # its committed offsets are the 30 it has not read.
        (topic,) = _delivery_topics(settings, "mzj", "gongan.resident_population")
        behind, unread = _behind(settings, "mzj.cli", topic)
        assert unread == 30
        assert status["consumer_lag"] == [
            {
                "group": "mzj.cli",
                "consumer": "mzj",
                "entry": "gongan.resident_population",
                "topic": topic,
                "lag": behind,
            }
        ]
        assert status["router_workers"] == 1
        assert status["totals"]["active_grants"] == 4

        dead = read_all(settings.kafka, settings.topics.dlq)
        by_reason = Counter(dict(m.headers)[REASON_HEADER].decode() for m in dead)
        assert status["dlq"]["records"] == len(dead) == 6  # the sample's bad rows
        reported: Counter[str] = Counter()
        for r in status["dlq"]["by_reason"]:
            reported[r["reason"]] += r["records"]
        assert reported == by_reason

        trail = read_trail(settings)
        assert status["audit"]["events"] == len(trail)
        assert status["audit"]["intact"] is True
        kinds = Counter(r.event.kind for r in trail if r.event is not None)
        assert status["audit"]["events_by_kind"] == dict(kinds)

        # The monitor serves the same figures to Prometheus.
        monitor = subprocess.Popen(
            _cli(project, "monitor", "--metrics-port", "0", "--interval", "1"),
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        metrics = _scrape(monitor)
        assert (
            metrics[
                'exchange_source_records_total{department="gongan",entry="gongan.resident_population"}'
            ]
            == 35
        )
        assert (
            metrics[
                'exchange_consumer_lag_records{consumer="mzj",entry="gongan.resident_population",'
                'group="mzj.cli"}'
            ]
            == behind
        )
        assert metrics['exchange_grants{status="active"}'] == 4
        assert sum(v for k, v in metrics.items() if k.startswith("exchange_dlq_records_total")) == 6
        assert all(
            v == 1 for k, v in metrics.items() if k.startswith("exchange_audit_chain_intact")
        )
    finally:
        for process in (router, monitor):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
        log.close()


def _scrape(monitor: subprocess.Popen[bytes]) -> dict[str, float]:
    """The monitor's /metrics as {series: value}, once it has printed its port."""
    assert monitor.stdout is not None
    port = None
    lines: list[str] = []
    for raw in monitor.stdout:
        lines.append(raw.decode("utf-8", "replace"))
        found = re.search(r"/metrics on port (\d+)", lines[-1])
        if found:
            port = int(found.group(1))
            break
    assert port is not None, "".join(lines)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("exchange_"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out
