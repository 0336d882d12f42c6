"""`exchange audit verify` against the real trail, and against copies a test tampered with."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from collections.abc import Callable

import pytest

from exchange.audit.events import AuditEvent, Chain, Happening
from exchange.audit.trail import read_trail
from exchange.audit.writer import audit_codec
from exchange.kafka.admin import Admin, TopicSpec, plan_topics
from exchange.kafka.control import publish
from exchange.kafka.registry import Registry
from tests.integration.routing.conftest import EXCHANGE, RouterEnv

pytestmark = pytest.mark.integration
Tamper = Callable[[list[AuditEvent]], list[AuditEvent]]


def verify_cli(env: RouterEnv, topic: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(EXCHANGE), "--config", str(env.project.exchange_yaml), "audit", "verify"]
    return subprocess.run(
        [*args, *(["--topic", topic] if topic else [])], capture_output=True, text=True, timeout=120
    )


def copy_trail(env: RouterEnv, tamper: Tamper) -> str:
    """The router's chain, tampered with, on a new topic (as by an attacker with write access)."""
    events = [
        r.event
        for r in read_trail(env.settings)
        if r.event and r.event.chain_id.startswith("router.")
    ]
    topic = f"{env.settings.topics.audit}.copy-{uuid.uuid4().hex[:6]}"
    admin = Admin(env.settings.kafka)
    admin.apply(plan_topics([TopicSpec(topic, 1, 1)], {}))
    codec = audit_codec(env.settings, Registry(env.settings.registry))
    publish(
        env.settings.kafka, topic, [(e.chain_id, codec.encode(e.to_avro())) for e in tamper(events)]
    )
    return topic


def test_the_real_trail_is_intact(routed: RouterEnv) -> None:
    result = verify_cli(routed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit trail intact" in result.stdout


def changed(events: list[AuditEvent]) -> list[AuditEvent]:
    events[1] = dataclasses.replace(events[1], details=events[1].details.replace("1", "2", 1))
    return events


def dropped(events: list[AuditEvent]) -> list[AuditEvent]:
    return events[:1] + events[2:]


def reordered(events: list[AuditEvent]) -> list[AuditEvent]:
    events[1], events[2] = events[2], events[1]
    return events


def forged(events: list[AuditEvent]) -> list[AuditEvent]:
    last = events[-1]
    # Correctly linked, but sealed without the deployment's key.
    chain = Chain(last.chain_id, "sha256", None, last.sequence + 1, last.hash)
    return [
        *events,
        chain.seal(Happening("delivery.receipt", last.actor, last.ts_ms, {"count": 1})),
    ]


@pytest.mark.parametrize(
    ("tamper", "breach"),
    [(changed, "changed"), (dropped, "missing"), (reordered, "reordered"), (forged, "forged")],
)
def test_tampering_is_found(routed: RouterEnv, tamper: Tamper, breach: str) -> None:
    topic = copy_trail(routed, tamper)
    result = verify_cli(routed, topic)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"BROKEN: {breach}" in result.stdout.replace("\n", " ").replace("│", " ")
        or breach in result.stdout
    )
