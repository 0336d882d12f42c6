"""The router rides out outages on a platform of its own (other ports, stopped and started here):
the broker killed for 120 s, then the registry stopped for 60 s while a grant starts. The router
process never exits, the other grants keep routing through the registry outage, the new grant is
served once the registry is back, and plain read_committed consumers see every entitled source
record exactly once."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from exchange.devplatform import LocalPlatform
from exchange.devplatform.processes import read_pid
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.routing.conftest import (
    CN,
    RouterEnv,
    change_value,
    person,
    plain_committed,
)

pytestmark = pytest.mark.integration
PORTS = {
    "kafka_port": (9092, 29092),
    "controller_port": (9093, 29093),
    "registry_port": (8081, 28081),
}
BROKER_DOWN_S = 120
REGISTRY_DOWN_S = 60
#: The grants of mzj (every row) and of the county (its rows only).
GRANTS = ("o-all", "o-county")


@pytest.fixture(scope="module")
def outage_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RouterEnv, LocalPlatform]]:
    root = tmp_path_factory.mktemp("outages")
    shutil.copytree(ROOT / "config", root / "config")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    project = Project(root)
    yaml = project.exchange_yaml
    text = yaml.read_text(encoding="utf-8")
    for key, (old, new) in PORTS.items():
        text = text.replace(f"{key}: {old}\n", f"{key}: {new}\n")
    text = text.replace("localhost:9092", "localhost:29092").replace(
        "localhost:8081", "localhost:28081"
    )
    text = text.replace("state_dir: ../.exchange ", f"state_dir: {root / 'platform'} ")
    yaml.write_text(text, encoding="utf-8")
    platform = LocalPlatform(project.settings())
    platform.up()
    env = RouterEnv(IsolatedProject(project))
    try:
        yield env, platform
    finally:
        env.stop_router(kill=True)
        platform.down(purge=True)


class Publisher(threading.Thread):
    """Publishes numbered changes at a steady pace; its producer waits out outages (10 min)."""

    def __init__(self, env: RouterEnv) -> None:
        super().__init__(daemon=True)
        self.env = env
        self.sent = 0
        self.stopping = threading.Event()
        self.producer = Producer(
            env.settings.kafka.client_config(
                **{"enable.idempotence": True, "acks": "all", "message.timeout.ms": 600_000}
            )
        )

    def run(self) -> None:
        while not self.stopping.is_set():
            for _ in range(50):
                i = self.sent
                # A new name each time: every change is one its grants see (one that changes
                # nothing a grant sees is not delivered to it).
                row = {**person(i % 15_000, "140602" if i % 2 else "140603"), "name": f"张{i}"}
                value = change_value(self.env.codec, row, self.env.provider, "c", f"o-{i}")
                self.producer.produce(
                    self.env.project.source_topic, key=row["citizen_id"].encode(), value=value
                )
                self.sent += 1
            self.producer.poll(0)
            time.sleep(0.25)
        assert self.producer.flush(600) == 0


def test_the_router_rides_out_a_broker_and_a_registry_outage(
    outage_env: tuple[RouterEnv, LocalPlatform],
) -> None:
    env, platform = outage_env
    c = env.consumers
    plain = {"citizen_id": "none", "name": "none"}
    env.grant(c["mzj"], GRANTS[0], fields=["citizen_id", "name", "region_code"], masks=plain)
    env.grant(
        c["county"],
        GRANTS[1],
        fields=["citizen_id", "name"],
        row_filter={"region_code": {"in": ["140602"]}},
        masks=plain,
    )
    env.start_router()
    publisher = Publisher(env)
    publisher.start()
    try:
        env.wait_for("routing under way", lambda: _count(env, c["mzj"]) >= 500, 120)

        _kill(platform, "kafka")
        _alive_for(env, BROKER_DOWN_S)
        platform.up()
        sent = publisher.sent
        env.wait_for("routing again", lambda: _count(env, c["mzj"]) >= sent, 300)

        # A grant that starts while the registry is away: its delivery schema cannot be
        # registered, so it waits; the others go on.
        starts = dt.datetime.now(CN) + dt.timedelta(seconds=15)
        env.grant(
            c["fresh"],
            "o-fresh",
            fields=["name", "region_code"],
            masks={"name": "none"},
            valid_from=starts,
        )
        _kill(platform, "registry")
        before = _count(env, c["mzj"])
        _alive_for(env, REGISTRY_DOWN_S)
        assert _count(env, c["mzj"]) > before + 1000, "routing stopped during the registry outage"
        platform.up()
        publisher.stopping.set()
        publisher.join()
        total = publisher.sent
        env.wait_for("everything routed", lambda: _count(env, c["mzj"]) >= total, 300)
        keys = min(total, 15_000)  # the publisher's rows repeat their keys
        env.wait_for("the new grant served", lambda: _count(env, c["fresh"]) >= keys, 300)
        assert env.process is not None and env.process.poll() is None
    finally:
        publisher.stopping.set()
    source_offsets = _source_offsets(env)
    for consumer, entitled in {
        c["mzj"]: source_offsets["all"],
        c["county"]: source_offsets["140602"],
    }.items():
        seen = _positions(env, consumer, GRANTS[consumer == c["county"]])
        assert set(seen) == entitled, consumer
        assert max(seen.values()) == 1, f"{consumer}: a source record delivered twice"
    # The grant that started late got the current rows (each key's last record), and what
    # changed after its backfill read the key: nothing twice, nothing the source lacks.
    seen = _positions(env, c["fresh"], "o-fresh")
    assert source_offsets["latest"] <= set(seen) <= source_offsets["all"]
    assert max(seen.values()) == 1, "a source record delivered twice"
    assert len(seen) < len(source_offsets["all"])  # not the history


def _kill(platform: LocalPlatform, component: str) -> None:
    pid = read_pid(platform.state / "run" / f"{component}.pid", str(platform.state))
    assert pid is not None, f"{component} is not running"
    os.kill(pid, signal.SIGKILL)


def _alive_for(env: RouterEnv, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert env.process is not None and env.process.poll() is None, (
            f"the router exited:\n{env.log.read_text()[-3000:]}"
        )
        time.sleep(1)


def _read(env: RouterEnv, topic: str) -> list[tuple[str, int]]:
    """``(source position token, partition)`` of every committed record of ``topic``; none
    while the broker is away."""
    try:
        return [
            (_source_position(env, m), m.partition())
            for m in plain_committed(env.settings, topic, 60)
        ]
    except KafkaException:
        return []


def _source_position(env: RouterEnv, msg: Any) -> str:
    """A delivery's value gives its source position's token; a tombstone gives it in a
    header."""
    if msg.value() is None:
        return str(dict(msg.headers() or [])["exchange.source"].decode())
    return str(env.lookup.decode(msg.value())["source_position"])


def _count(env: RouterEnv, consumer: str) -> int:
    return len(_read(env, env.delivery_topic(consumer)))


def _positions(env: RouterEnv, consumer: str, grant: str) -> Counter[str]:
    """The source positions of the consumer's deliveries (from its grant's position tokens)."""
    source = env.tokens(grant, "position", env.source_positions())
    return Counter(source[token] for token, _p in _read(env, env.delivery_topic(consumer)))


def _source_offsets(env: RouterEnv) -> dict[str, set[str]]:
    """Source positions of every record, of those in region 140602, and of each key's last."""
    out: dict[str, set[str]] = {"all": set(), "140602": set()}
    last: dict[bytes, str] = {}
    consumer = Consumer(
        env.settings.kafka.client_config(
            **{"group.id": f"src-{time.monotonic_ns()}", "enable.partition.eof": True}
        )
    )
    topic = env.project.source_topic
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    ends: set[int] = set()
    while len(ends) < len(metadata.partitions):
        for msg in consumer.consume(5000, timeout=5):
            if msg.error() is not None:
                ends.add(msg.partition())
                continue
            position = f"{topic}/{msg.partition()}/{msg.offset()}"
            out["all"].add(position)
            last[msg.key() or b""] = position
            change = env.lookup.decode(msg.value())
            if change["after"]["region_code"] == "140602":
                out["140602"].add(position)
    consumer.close()
    out["latest"] = set(last.values())
    return out
