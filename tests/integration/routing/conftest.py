"""The router against the real broker and registry: an isolated catalog (population schema and
rules), departments to grant to, a running `exchange router` process, and topic helpers."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.config import ExchangeSettings
from exchange.grants.model import Actor, Grant, GrantRequest
from exchange.grants.store import GrantStore
from exchange.kafka.admin import Admin
from exchange.kafka.control import Message, publish, read_all
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec, SchemaLookup
from exchange.routing.deliveries import delivery_topic
from exchange.routing.salts import GrantSalts
from exchange.routing.transform import TokenKind, delivery_token, ids_key
from exchange.rules.checksums import make_citizen_id
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.connectors.conftest import _RULES

EXCHANGE = Path(sys.executable).parent / "exchange"
CN = dt.timezone(dt.timedelta(hours=8))


def change_value(
    codec: AvroCodec,
    after: dict[str, Any] | None,
    department: str,
    op: str = "u",
    event: str | None = None,
    position: str = "0",
) -> bytes:
    """A source change record as a connector of ``department`` publishes it."""
    return codec.encode(
        {
            "op": op,
            "after": after,
            "source": {
                "department": department,
                "system": "t",
                "connector": "t",
                "position": position,
            },
            "ts_ms": int(time.time() * 1000),
            "event_id": event or uuid.uuid4().hex,
        }
    )


def router_command(exchange_yaml: Path, worker_id: str) -> list[str]:
    """``exchange router`` for one worker, metrics on a free port."""
    return [
        str(EXCHANGE),
        "--config",
        str(exchange_yaml),
        "router",
        "--worker-id",
        worker_id,
        "--metrics-port",
        "0",
    ]


class RouterEnv:
    def __init__(self, project: IsolatedProject) -> None:
        self.project = project
        uid = self.uid = project.uid
        self.provider = uid
        self.consumers = {
            n: f"{uid}_{n}" for n in ("mzj", "county", "nogrant", "late", "ops", "fresh", "trimmed")
        }
        departments = "".join(
            f"  - {{id: {d}, name: 部门{n}, level: city, region_code: '140600'}}\n"
            for n, d in self.consumers.items()
        )
        project.write(
            "config/departments.yaml",
            "departments:\n"
            f"  - {{id: {uid}, name: 测试公安, level: city, region_code: '140600'}}\n"
            + departments,
        )
        project.edit(
            f"config/catalog/{uid}.yaml",
            "    fields:\n"
            "      citizen_id: {sensitivity: sensitive, rules: [required, citizen_id]}\n",
            _RULES,
        )
        project.edit("config/exchange.yaml", "group_id: exchange-router", f"group_id: router-{uid}")
        project.edit(
            "config/exchange.yaml", "operators: [dsj]", f"operators: [{self.consumers['ops']}]"
        )
        self.settings: ExchangeSettings = project.settings()
        key = self.settings.resolve(self.settings.audit.key_file or Path("x"))
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(uuid.uuid4().hex * 2 + "\n", encoding="ascii")
        self.catalog = load_catalog(self.settings).require_valid()
        apply_catalog(self.catalog, self.settings)
        latest = Registry(self.settings.registry).latest(project.subject)
        assert latest is not None
        self.codec = AvroCodec(latest.schema_id, latest.schema)
        self.lookup = SchemaLookup(Registry(self.settings.registry).schema_by_id)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = project.root / "router.log"
        #: Per consumer, the delivery topic of the generation it was granted last here.
        self._topics: dict[str, str] = {}

    # -- grants ------------------------------------------------------------------------------

    def store(self, department: str) -> GrantStore:
        return GrantStore(self.settings, self.catalog, Actor(department=department, person="测试"))

    def grant(self, consumer: str, grant_id: str, **terms: Any) -> Grant:
        now = dt.datetime.now(CN)
        request = GrantRequest.model_validate(
            {
                "consumer": consumer,
                "entry": self.project.entry_id,
                "fields": ["citizen_id", "name", "region_code"],
                "purpose": "data_verification",
                "legal_basis": "测试依据",
                "valid_from": now - dt.timedelta(minutes=1),
                "valid_until": now + dt.timedelta(days=1),
                **terms,
            }
        )
        store = self.store(consumer)
        store.request(request, grant_id=grant_id)
        store.close()
        approver = self.store(self.provider)
        approved = approver.approve(grant_id, "测试批准")
        approver.close()
        self._topics[consumer] = delivery_topic(self.settings, approved.terms())
        return approved

    # -- source records ----------------------------------------------------------------------

    def change(
        self,
        row: dict[str, Any],
        op: str = "u",
        department: str | None = None,
        event: str | None = None,
    ) -> tuple[str, bytes]:
        value = change_value(
            self.codec, None if op == "d" else row, department or self.provider, op, event
        )
        return row["citizen_id"], value

    def publish(self, records: Sequence[tuple[str, bytes | None]]) -> None:
        publish(self.settings.kafka, self.project.source_topic, records)

    # -- the router --------------------------------------------------------------------------

    def start_router(self, worker: str = "w1") -> None:
        self.process = subprocess.Popen(
            router_command(self.project.exchange_yaml, f"{self.uid}-{worker}"),
            cwd=self.project.root,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop_router(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=60)
        self.process = None

    # -- reading back ------------------------------------------------------------------------

    def delivery_topic(self, consumer: str) -> str:
        """The topic of the grant generation ``consumer`` was granted last here."""
        return self._topics[consumer]

    def delivery_topics(self, consumer: str, entry_id: str | None = None) -> list[str]:
        """Every delivery topic of ``consumer`` on the entry there is now (one per grant
        generation still active)."""
        prefix = self.settings.topics.deliveries_of(consumer, entry_id or self.project.entry_id)
        topics = Admin(self.settings.kafka).partition_counts()
        return sorted(t for t in topics if t.startswith(prefix))

    def deliveries(self, consumer: str) -> list[tuple[Message, dict[str, Any] | None]]:
        return self.deliveries_of(consumer, self.project.entry_id)

    def deliveries_of(
        self, consumer: str, entry_id: str
    ) -> list[tuple[Message, dict[str, Any] | None]]:
        """What the consumer can read of the entry: every delivery topic of it there is."""
        return [
            (m, None if m.value is None else self.lookup.decode(m.value))
            for topic in self.delivery_topics(consumer, entry_id)
            for m in read_all(self.settings.kafka, topic, committed=True)
        ]

    def token(self, grant_id: str, kind: TokenKind, value: str) -> str:
        """A source event id or position (``topic/partition/offset``) as grant ``grant_id``
        delivers it (``routing.transform.delivery_token``), with the router's salt secret."""
        (token,) = self.tokens(grant_id, kind, [value])
        return token

    def tokens(self, grant_id: str, kind: TokenKind, values: Iterable[str]) -> dict[str, str]:
        """:meth:`token` -> value, of each of ``values``: what a delivered token stands for."""
        salts, _made = GrantSalts.load(self.settings)
        key = ids_key(salts.salt(grant_id))
        return {delivery_token(key, kind, v): v for v in values}

    def source_positions(self) -> list[str]:
        """``topic/partition/offset`` of every offset of the source topic up to its end."""
        topic = self.project.source_topic
        admin = Admin(self.settings.kafka)
        counts = admin.partition_counts()
        ends = admin.end_offsets({(topic, p): 0 for p in range(counts[topic])})
        return [f"{topic}/{p}/{o}" for (_t, p), end in ends.items() for o in range(end)]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"router exited while waiting for {what}:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        raise AssertionError(
            f"timed out waiting for {what}; router log:\n{self.log.read_text()[-3000:]}"
        )


@pytest.fixture(scope="module")
def router_env(
    platform: ExchangeSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RouterEnv]:
    root = tmp_path_factory.mktemp("router")
    shutil.copytree(ROOT / "config", root / "config")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    env = RouterEnv(IsolatedProject(Project(root)))
    yield env
    env.stop_router()


def plain_committed(settings: ExchangeSettings, topic: str, timeout_s: float = 120) -> list[Any]:
    """Every record of ``topic`` as a plain read_committed confluent-kafka consumer sees it, to
    each partition's end (confluent ``Message`` objects); empty when the topic does not exist."""
    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": f"plain-{time.monotonic_ns()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or not metadata.partitions:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        out = []
        ends: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(metadata.partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(5000, timeout=1):
                partition = int(msg.partition() or 0)
                if msg.error() is not None:
                    ends.add(partition)
                    continue
                ends.discard(partition)
                out.append(msg)
        return out
    finally:
        consumer.close()


def person(i: int, region: str) -> dict[str, Any]:
    return {
        "citizen_id": make_citizen_id(region, dt.date(1980, 1, 1) + dt.timedelta(days=i), i % 999),
        "name": f"张{'三四五六七'[i % 5]}丰",
        "gender": "1",
        "birth_date": dt.date(1980, 1, 1) + dt.timedelta(days=i),
        "ethnicity": "汉族",
        "address": "朔州市某街道",
        "region_code": region,
        "phone": "13800000000",
    }


ROWS = [person(i, "140602" if i % 2 else "140603") for i in range(10)]


@pytest.fixture(scope="module")
def routed(router_env: RouterEnv) -> RouterEnv:
    env = router_env
    c = env.consumers
    env.grant(
        c["mzj"],
        "g-mzj",
        fields=["citizen_id", "name", "region_code"],
        masks={"citizen_id": {"keep": {"first": 6, "last": 4}}},
    )
    env.grant(
        c["county"],
        "g-county",
        fields=["citizen_id", "region_code", "birth_date"],
        row_filter={"region_code": {"prefix": "140602"}},
        masks={"citizen_id": "none"},
    )
    env.publish([env.change(r) for r in ROWS])
    env.start_router()
    env.wait_for("10 deliveries to mzj", lambda: len(env.deliveries(c["mzj"])) >= 10, 120)
    return env
