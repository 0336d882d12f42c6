"""Broker-enforced access on the secure local platform: departments read only what their active
grants allow and publish only the entries they provide; the router, connectors and consumers
each run as their own principal; every ACL change is audited."""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from exchange.audit.events import AuditEvent, Chain, Happening
from exchange.audit.keys import add_key, read_register
from exchange.audit.signing import Signer
from exchange.audit.trail import read_trail
from exchange.audit.verify import verify
from exchange.audit.writer import (
    AuditWriter,
    audit_codec,
    chain_partition,
    load_key,
    load_signer,
)
from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.client.consumer import DeliveryConsumer
from exchange.config import ExchangeSettings
from exchange.grants.model import Actor, GrantRequest
from exchange.grants.store import GrantStore, read_grants
from exchange.kafka.admin import Admin
from exchange.kafka.control import publish, read_all
from exchange.kafka.errors import KafkaOpError, RegistryError
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from exchange.routing.salts import GrantSalts
from exchange.security.acls import Acl
from exchange.security.credentials import issue
from exchange.security.sync import sync_once, to_binding
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.connectors.conftest import _RULES, POPULATION_FIELDS
from tests.integration.routing.conftest import change_value, person
from tests.integration.security.conftest import SecurePlatform, env_file
from tests.integration.security.corpus import BROKER, corpus

EXCHANGE = Path(sys.executable).parent / "exchange"
ROWS = [person(i, "140602") for i in range(6)]


class SecureExchange:
    def __init__(self, platform: SecurePlatform, root: Path) -> None:
        shutil.copytree(ROOT / "config", root / "config")
        shutil.copytree(ROOT / "schemas", root / "schemas")
        self.platform = platform
        self.project = project = IsolatedProject(Project(root))
        uid = self.uid = project.uid
        self.provider, self.reader, self.other = uid, f"{uid}_mzj", f"{uid}_zjj"
        self.late = f"{uid}_late"  # granted later, for a short while
        project.write(
            "config/departments.yaml",
            "departments:\n"
            + "".join(
                f"  - {{id: {d}, name: 部门{i}, level: city, region_code: '140600'}}\n"
                for i, d in enumerate((self.provider, self.reader, self.other, self.late))
            ),
        )
        # The rules of the real population entry, so rule violations can be tried.
        project.edit(
            f"config/catalog/{uid}.yaml",
            "    fields:\n"
            "      citizen_id: {sensitivity: sensitive, rules: [required, citizen_id]}\n",
            _RULES,
        )
        self.config = project.exchange_yaml
        self.operator = platform.load(self.config, platform.env("operator"))
        # Secure mode seals with each writer's signature, not a shared HMAC key.
        assert self.operator.audit.key_file is None
        self.catalog = load_catalog(self.operator).require_valid()
        apply_catalog(self.catalog, self.operator)
        self.audit = AuditWriter.connect(self.operator, "security.cli")
        # The platform made the operator's and the router's signing keys; the operator
        # registers them, as `exchange audit keys add` does.
        for principal in ("operator", "router", "portal"):
            signer = load_signer(platform.load(self.config, platform.env(principal)))
            assert signer is not None, f"the platform gave {principal} no signing key"
            add_key(self.operator, self.audit, principal, signer.public_raw, "test")
        for consumer in (self.reader, self.other):
            self.grant(consumer)
        self.creds = root / "credentials"
        departments = set(self.catalog.departments)
        for dept, role in (
            (self.provider, "connector"),
            (self.other, "connector"),
            (self.reader, "consumer"),
            (self.other, "consumer"),
            (self.late, "consumer"),
        ):
            issue(self.operator, dept, role, self.audit, departments, self.creds)
        self.first_sync = sync_once(self.operator, self.audit)
        self.router: subprocess.Popen[bytes] | None = None
        self.watch: subprocess.Popen[bytes] | None = None

    def env(self, principal: str) -> dict[str, str]:
        return env_file(self.creds / f"{principal}.env")

    def settings(self, principal: str) -> ExchangeSettings:
        return self.platform.load(self.config, self.env(principal))

    def grant(self, consumer: str, lasting: dt.timedelta = dt.timedelta(days=1)) -> None:
        now = dt.datetime.now(dt.UTC)
        request = GrantRequest.model_validate(
            {
                "consumer": consumer,
                "entry": self.project.entry_id,
                "fields": ["citizen_id", "name", "region_code"],
                "purpose": "data_verification",
                "legal_basis": "测试依据",
                "valid_from": now - dt.timedelta(minutes=1),
                "valid_until": now + lasting,
            }
        )
        gid = f"{consumer}-grant"
        self.store(consumer).request(request, grant_id=gid)
        self.store(self.provider).approve(gid, "批准")

    def topic(self, consumer: str) -> str:
        """The delivery topic of the consumer's grant (``<consumer>-grant``, requested and
        approved: its revision 2)."""
        entry = self.project.entry_id
        return self.operator.topics.delivery_of(consumer, entry, f"{consumer}-grant", "r2")

    def store(self, department: str) -> GrantStore:
        # Grants are written by the platform (the operator principal) for the department.
        return GrantStore(self.operator, self.catalog, Actor(department=department, person="测"))

    def spawn(
        self, args: list[str], principal_env: dict[str, str], log: str
    ) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.platform.dev_env, **principal_env}
        return subprocess.Popen(
            [str(EXCHANGE), "--config", str(self.config), *args],
            cwd=self.project.root,
            env=env,
            stdout=(self.project.root / log).open("ab"),
            stderr=subprocess.STDOUT,
        )

    def log(self, name: str) -> str:
        return (self.project.root / name).read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for proc in (self.router, self.watch):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
        self.audit.close()


@pytest.fixture(scope="module")
def exchange(
    secure_platform: SecurePlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureExchange]:
    world = SecureExchange(secure_platform, tmp_path_factory.mktemp("secure-exchange"))
    yield world
    world.close()


def read_events(settings: ExchangeSettings) -> list[AuditEvent]:
    return [r.event for r in read_trail(settings) if r.event is not None]


def wait_for(what: str, check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def read_error(settings: ExchangeSettings, topic: str, group: str) -> str | None:
    """Subscribe as ``settings``' principal; the broker's error code, or None if it let us in."""
    consumer = Consumer(
        settings.kafka.client_config(
            **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if consumer.assignment():
                    return None
                continue
            err = msg.error()
            if err is None:
                return None
            if err.code() != KafkaError._PARTITION_EOF:
                return str(err.name())
        return "NO_ANSWER"
    finally:
        consumer.close()


def publish_error(settings: ExchangeSettings, topic: str) -> str | None:
    try:
        publish(settings.kafka, topic, [("k", b"v")])
    except KafkaOpError as exc:
        return exc.code
    return None


def test_the_exchange_runs_with_each_component_as_its_own_principal(
    exchange: SecureExchange,
) -> None:
    provider = exchange.settings(f"connector-{exchange.provider}")
    latest = Registry(provider.registry).latest(exchange.project.subject)  # its reader login
    assert latest is not None
    codec = AvroCodec(latest.schema_id, latest.schema)
    records = [
        (
            row["citizen_id"],
            change_value(codec, row, exchange.provider, "r", position=str(i)),
        )
        for i, row in enumerate(ROWS)
    ]
    assert publish(provider.kafka, exchange.project.source_topic, records) == len(ROWS)

    router_env = exchange.platform.env("router")
    exchange.router = exchange.spawn(
        ["router", "--worker-id", f"{exchange.uid}-w1", "--metrics-port", "0"],
        router_env,
        "router.log",
    )
    reader = exchange.settings(f"consumer-{exchange.reader}")
    received: list[Any] = []

    def read() -> bool:
        if exchange.router is not None and exchange.router.poll() is not None:
            raise AssertionError(f"router exited:\n{exchange.log('router.log')}")
        client = DeliveryConsumer(
            reader, exchange.reader, [exchange.project.entry_id], group_id=f"{exchange.reader}.t"
        )
        try:
            client.run(received.append, max_changes=len(ROWS) - len(received), idle_timeout_s=2)
        finally:
            client.close()
        return len(received) >= len(ROWS)

    wait_for("the consumer to receive every row", read, timeout=120)
    # Keys arrive hashed with the grant's salt (citizen_id is sensitive): one per row.
    assert len({c.key for c in received}) == len(ROWS)
    # The grant's projection holds: only the granted fields arrive.
    assert set(received[0].value or {}) == {"citizen_id", "name", "region_code"}


def test_a_department_cannot_read_another_departments_deliveries(
    exchange: SecureExchange,
) -> None:
    reader = exchange.settings(f"consumer-{exchange.reader}")
    other_topic = exchange.topic(exchange.other)
    assert (
        read_error(reader, other_topic, f"{exchange.reader}.peek") == "TOPIC_AUTHORIZATION_FAILED"
    )
    # Nor use a consumer group outside its own prefix.
    own_topic = exchange.topic(exchange.reader)
    assert read_error(reader, own_topic, f"{exchange.other}.x") == "GROUP_AUTHORIZATION_FAILED"


def test_nobody_but_the_router_reads_source_topics(exchange: SecureExchange) -> None:
    for principal, group in (
        (f"consumer-{exchange.reader}", f"{exchange.reader}.src"),
        (f"connector-{exchange.provider}", "exchange-reader-src"),
    ):
        settings = exchange.settings(principal)
        code = read_error(settings, exchange.project.source_topic, group)
        assert code == "TOPIC_AUTHORIZATION_FAILED", principal


def test_a_department_cannot_publish_an_entry_it_does_not_provide(
    exchange: SecureExchange,
) -> None:
    other = exchange.settings(f"connector-{exchange.other}")
    assert publish_error(other, exchange.project.source_topic) == "TOPIC_AUTHORIZATION_FAILED"
    provider = exchange.settings(f"connector-{exchange.provider}")
    # Not even the provider writes the control topics, nor the router's deliveries.
    for topic in (
        exchange.operator.topics.grants,
        exchange.operator.topics.catalog,
        exchange.operator.topics.audit,
        exchange.topic(exchange.reader),
    ):
        assert publish_error(provider, topic) == "TOPIC_AUTHORIZATION_FAILED", topic


def test_a_revoked_grant_closes_the_topic_by_itself(exchange: SecureExchange) -> None:
    other = exchange.settings(f"consumer-{exchange.other}")
    topic = exchange.topic(exchange.other)
    assert read_error(other, topic, f"{exchange.other}.before") is None
    exchange.watch = exchange.spawn(
        ["acl", "sync", "--watch"], exchange.platform.env("operator"), "acl-watch.log"
    )
    exchange.store(exchange.provider).revoke(f"{exchange.other}-grant", "撤销")

    def refused() -> bool:
        if exchange.watch is not None and exchange.watch.poll() is not None:
            raise AssertionError(f"acl watch exited:\n{exchange.log('acl-watch.log')}")
        # Its last grant is gone, so its group prefix is too: either refusal may come first.
        return read_error(other, topic, f"{exchange.other}.after") in (
            "TOPIC_AUTHORIZATION_FAILED",
            "GROUP_AUTHORIZATION_FAILED",
        )

    wait_for("the revoked consumer to be refused", refused, timeout=60)
    removed = [
        e
        for e in read_events(exchange.operator)
        if e.kind == "acl.removed" and e.consumer == exchange.other
    ]
    assert {(e.detail()["operation"], e.detail()["name"]) for e in removed} >= {
        ("READ", topic),
        ("DESCRIBE", topic),
    }
    assert removed[0].chain_id == "security.watch"


def test_approval_opens_and_expiry_closes_the_topic_by_themselves(
    exchange: SecureExchange,
) -> None:
    assert exchange.watch is not None, "runs after the revocation test, which starts the watch"
    late = exchange.settings(f"consumer-{exchange.late}")
    topic = exchange.topic(exchange.late)
    assert read_error(late, topic, f"{exchange.late}.a") is not None  # no grant yet
    exchange.grant(exchange.late, lasting=dt.timedelta(seconds=40))
    # The router creates the topic and the watch adds the ACLs; then the grant runs out.
    wait_for(
        "the approved grant to open the topic",
        lambda: read_error(late, topic, f"{exchange.late}.b") is None,
    )
    wait_for(
        "the expired grant to close the topic",
        lambda: read_error(late, topic, f"{exchange.late}.c") is not None,
        timeout=90,
    )
    kinds = [e.kind for e in read_events(exchange.operator) if e.consumer == exchange.late]
    assert "acl.added" in kinds and "acl.removed" in kinds


def test_acl_changes_and_credentials_are_audited(exchange: SecureExchange) -> None:
    events = read_events(exchange.operator)
    added = {
        (e.detail()["principal"], e.detail()["operation"], e.detail()["name"])
        for e in events
        if e.kind == "acl.added"
    }
    for acl in exchange.first_sync.add:
        assert (f"User:{acl.principal}", acl.operation, acl.name) in added
    issued = {e.detail()["principal"] for e in events if e.kind == "credentials.created"}
    assert f"User:consumer-{exchange.reader}" in issued
    keys = read_register(exchange.operator).book
    assert {k.principal for k in keys.keys.values()} >= {"operator", "router"}
    assert verify(read_trail(exchange.operator), load_key(exchange.operator), keys).intact


def test_wrong_password_and_plaintext_clients_are_refused(exchange: SecureExchange) -> None:
    settings = exchange.settings(f"consumer-{exchange.reader}")
    wrong = settings.kafka.client_config(**{"sasl.password": "not-the-password"})
    with pytest.raises(KafkaException) as info:
        AdminClient(wrong).list_topics(timeout=10)
    assert info.value.args[0].code() in (KafkaError._AUTHENTICATION, KafkaError._TRANSPORT)
    plain = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "security.protocol": "PLAINTEXT",
    }
    with pytest.raises(KafkaException):
        AdminClient(plain).list_topics(timeout=5)
    producer = Producer(plain)
    producer.produce(exchange.project.source_topic, b"v", key=b"k")
    assert producer.flush(5) == 1  # never acknowledged


def test_only_the_platform_registers_schemas_and_nobody_reads_them_anonymously(
    exchange: SecureExchange,
) -> None:
    url = exchange.operator.registry.url
    context = ssl.create_default_context(cafile=str(exchange.operator.registry.ca_file))
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{url}/subjects", timeout=10, context=context)
    assert anonymous.value.code == 401
    # Every principal reads with the login its .env file gives it: a department the shared
    # read-only one, which may not register.
    consumer = exchange.settings(f"consumer-{exchange.reader}")
    assert consumer.registry.username == "registry-reader"
    assert Registry(consumer.registry).latest(exchange.project.subject) is not None
    with pytest.raises(RegistryError) as refused:
        Registry(consumer.registry).register(f"{exchange.uid}.reader-value", '"string"')
    assert "403" in str(refused.value)
    body = b'{"schema": "{\\"type\\": \\"string\\"}"}'
    request = urllib.request.Request(
        f"{url}/subjects/forged-value/versions",
        data=body,
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10, context=context)
    assert info.value.code == 401
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain HTTP at all
        urllib.request.urlopen(f"{url.replace('https', 'http')}/subjects", timeout=5)


def test_each_malformed_kind_and_an_oversized_record_go_to_the_dlq_and_routing_goes_on(
    exchange: SecureExchange,
) -> None:
    # Issue 21's corpus, published by the provider's own connector principal to its own topic.
    provider = exchange.settings(f"connector-{exchange.provider}")
    subject = exchange.project.subject
    latest = Registry(provider.registry).latest(subject)
    assert latest is not None
    codec = AvroCodec(latest.schema_id, latest.schema)
    same_shape = json.dumps({**latest.schema, "doc": "the same shape, another subject"})
    foreign_id = Registry(exchange.operator.registry).register(
        f"{exchange.uid}.forged-value", same_shape
    )

    def encode(row: dict[str, Any], department: str | None = None, op: str = "u") -> bytes:
        return change_value(codec, row, exchange.provider if department is None else department, op)

    cases = corpus(codec, encode, person(500, "140602"), exchange.provider, foreign_id)
    assert len(cases) >= 40
    if exchange.router is None or exchange.router.poll() is not None:
        exchange.router = exchange.spawn(
            ["router", "--worker-id", f"{exchange.uid}-w2", "--metrics-port", "0"],
            exchange.platform.env("router"),
            "router.log",
        )
    news = NewDeliveries(exchange)
    producer = Producer(
        provider.kafka.client_config(
            **{"acks": "all", "enable.idempotence": True, "message.max.bytes": 2_000_000}
        )
    )
    positions: dict[str, str] = {}
    topic = exchange.project.source_topic

    def delivered(case: str) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            assert err is None, f"{case}: {err}"
            positions[f"{topic}/0/{msg.offset()}"] = case

        return report

    refusals: list[str] = []
    lone = Producer(provider.kafka.client_config(**{"acks": "all"}))
    for case in (c for c in cases if c.reason == BROKER):
        # Alone: a batch holding such a record fails whole.
        lone.produce(
            topic,
            key=case.key,
            value=case.value,
            partition=0,
            on_delivery=lambda err, _msg: refusals.append(err.name() if err else "accepted"),
        )
        assert lone.flush(30) == 0
    assert refusals == ["INVALID_RECORD", "INVALID_RECORD"]
    cases = [c for c in cases if c.reason != BROKER]
    assert len(cases) >= 40
    for case in cases:
        producer.produce(
            topic, key=case.key, value=case.value, partition=0, on_delivery=delivered(case.kind)
        )
    # And a valid record whose delivery is too large to produce (the name masked to one "*" per
    # character): it stopped the router for everyone before.
    big = {**person(509, "140602"), "name": "张" + "a" * 1_037_000}
    big_value = encode(big)
    assert 1_000_000 < len(big_value) < 1_048_576  # fits the source topic, not a delivery
    producer.produce(
        topic,
        key=big["citizen_id"].encode(),
        value=big_value,
        partition=0,
        on_delivery=delivered("oversized valid record"),
    )
    valid = [person(510 + i, "140602") for i in range(3)]
    for row in valid:
        producer.produce(topic, key=row["citizen_id"].encode(), value=encode(row), partition=0)
    assert producer.flush(30) == 0
    want = {c.kind: c.reason for c in cases} | {"oversized valid record": "delivery_too_large"}

    def letters() -> dict[str, str]:
        got = {}
        for m in read_all(exchange.operator.kafka, exchange.operator.topics.dlq):
            letter = json.loads(m.value or b"{}")
            kind = positions.get(letter.get("position", ""))
            if kind is not None and letter.get("origin") == "router":
                got[kind] = letter["reason"]
        return got

    with contextlib.suppress(AssertionError):  # the assertion below names what is missing
        wait_for("a dead letter for every malformed kind", lambda: len(letters()) >= len(want))
    got = letters()
    wrong = {k: (got.get(k), r) for k, r in want.items() if got.get(k) != r}
    assert not wrong, f"kind: (got, wanted): {wrong}"
    wait_for("the valid records after the corpus", lambda: news.read() >= len(valid), 120)
    assert exchange.router is not None and exchange.router.poll() is None


class NewDeliveries:
    """The reader's deliveries counted from when this was made, read as its consumer principal
    (one group throughout, so each read goes on from the last)."""

    def __init__(self, exchange: SecureExchange) -> None:
        self.exchange = exchange
        self.group = f"{exchange.reader}.new-{time.monotonic_ns()}"
        self._read()  # what was there before does not count
        self.count = 0

    def read(self) -> int:
        self.count += self._read()
        return self.count

    def _read(self) -> int:
        e = self.exchange
        received: list[Any] = []
        client = DeliveryConsumer(
            e.settings(f"consumer-{e.reader}"), e.reader, [e.project.entry_id], group_id=self.group
        )
        try:
            client.run(received.append, idle_timeout_s=2)
        finally:
            client.close()
        return len(received)


def test_a_forged_audit_event_by_any_principal_is_reported_with_its_position(
    exchange: SecureExchange, tmp_path: Path
) -> None:
    """Issue 21: as ``router`` (which may write the trail), a ``grant.approved`` appended to an
    operator's grant chain, hash-linked to it and signed with the router's own registered
    key; as a connector and a consumer, the same after the broker first refused
    them and an ACL mistakenly let them write. `audit verify` reports each one, where it is."""
    op = exchange.operator
    connector, consumer = f"connector-{exchange.other}", f"consumer-{exchange.reader}"
    forgers: dict[str, tuple[ExchangeSettings, Signer]] = {}
    router = exchange.platform.load(exchange.config, exchange.platform.env("router"))
    router_signer = load_signer(router)
    assert router_signer is not None
    forgers["router"] = (router, router_signer)
    for principal in (connector, consumer):
        # Their own keys, registered: a key is bound to its principal, not to "any event".
        signer = Signer.create(tmp_path / f"{principal}.pem")[0]
        add_key(op, exchange.audit, principal, signer.public_raw, "test")
        forgers[principal] = (exchange.settings(principal), signer)

    positions = {
        f"grants.{exchange.uid}-victim-{principal}": forge_as(
            exchange, principal, settings, signer, f"grants.{exchange.uid}-victim-{principal}"
        )
        for principal, (settings, signer) in forgers.items()
    }
    result = verify(read_trail(op), load_key(op), read_register(op).book)
    for (principal, _), (victim, position) in zip(forgers.items(), positions.items(), strict=True):
        broken = result.chains[victim].broken
        assert broken is not None, f"{principal}'s forgery on {victim} not reported"
        assert (broken.breach, broken.position) == ("forged", position)
        assert f"signed by {principal}" in broken.message
    env = {**os.environ, **exchange.platform.dev_env, **exchange.platform.env("operator")}
    run = subprocess.run(
        [str(EXCHANGE), "--config", str(exchange.config), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    for victim in positions:
        assert victim in run.stdout
    assert "forged" in run.stdout and "NOT intact" in run.stderr


def forge_as(
    exchange: SecureExchange,
    principal: str,
    settings: ExchangeSettings,
    signer: Signer,
    victim: str,
) -> str:
    """Append a forged event to the operator's new chain ``victim`` as ``principal``; where
    it landed. A principal the broker refuses is let in by a mistaken ACL first."""
    op = exchange.operator
    writer = AuditWriter.connect(op, victim)
    writer.write([Happening("grant.requested", "测", int(time.time() * 1000), {"n": 1})])
    writer.close()
    last = [e for e in read_events(op) if e.chain_id == victim][-1]
    key = load_key(op)  # none in secure mode (the issue's router held the shared HMAC key)
    chain = Chain(victim, op.audit.algorithm, key, last.sequence + 1, last.hash, signer)
    forged = chain.seal(
        Happening("grant.approved", "forger", int(time.time() * 1000), {"state": "approved"})
    )
    value = audit_codec(op, Registry(op.registry)).encode(forged.to_avro())
    partition = chain_partition(victim, 3)
    topic = op.topics.audit
    if principal == "router":
        offset = produced_at(settings, topic, victim, value, partition)
    else:
        assert produce_error(settings, topic, victim, value, partition) == (
            "TOPIC_AUTHORIZATION_FAILED"
        )
        mistake = to_binding(Acl(principal, "TOPIC", topic, "LITERAL", "WRITE"))
        Admin(op.kafka).create_acls([mistake])
        try:
            offset = wait_for(
                "the mistaken ACL to take effect",
                lambda: produced_at(settings, topic, victim, value, partition),
            )
        finally:
            Admin(op.kafka).delete_acls([mistake])
    assert offset is not None
    return f"partition {partition} offset {offset}"


def produce_error(
    settings: ExchangeSettings, topic: str, key: str, value: bytes, partition: int
) -> str | None:
    result = _produce(settings, topic, key, value, partition)
    return result if isinstance(result, str) else None


def produced_at(
    settings: ExchangeSettings, topic: str, key: str, value: bytes, partition: int
) -> int | None:
    """The offset the record got, or None if the broker refused it."""
    result = _produce(settings, topic, key, value, partition)
    return result if isinstance(result, int) else None


def _produce(
    settings: ExchangeSettings, topic: str, key: str, value: bytes, partition: int
) -> int | str:
    outcome: list[int | str] = []
    producer = Producer(settings.kafka.client_config(**{"acks": "all"}))
    producer.produce(
        topic,
        key=key.encode(),
        value=value,
        partition=partition,
        on_delivery=lambda err, msg: outcome.append(err.name() if err else msg.offset()),
    )
    assert producer.flush(30) == 0
    return outcome[0]


def test_the_salts_stay_with_the_router(exchange: SecureExchange) -> None:
    """Issue 21: with a grant's salt, a hashed citizen ID is enumerated back in minutes. The
    salts are derived in the router from its own secret file; the monitor, reading everything
    it may read, finds neither a salt nor the secret, and the delivered keys show the router
    uses exactly those salts."""
    router = exchange.platform.load(exchange.config, exchange.platform.env("router"))
    secret = router.resolve(router.router.salt_secret_file)
    assert secret.is_relative_to(exchange.platform.local.state / "secure")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert (exchange.platform.local.state / "secure").stat().st_mode & 0o777 == 0o700
    salts = GrantSalts.load(router)[0]
    grant_id = f"{exchange.reader}-grant"
    salt = salts.salt(grant_id)

    topic = exchange.topic(exchange.reader)
    keys = {m.key for m in read_all(exchange.operator.kafka, topic)}
    for row in ROWS:  # the rows of the first test, delivered under hashed keys
        assert hmac.digest(salt, row["citizen_id"].encode(), "sha256").hex().encode() in keys

    monitor = exchange.platform.load(exchange.config, exchange.platform.env("monitor"))
    t = monitor.topics
    readable = (t.grants, t.catalog, t.audit, t.audit_keys, t.dlq)
    for name in readable:
        for m in read_all(monitor.kafka, name):
            seen = (m.key or b"") + (m.value or b"")
            for secret_bytes in (salt, salt.hex().encode(), salts.secret.hex().encode()):
                assert secret_bytes not in seen, f"{name} offset {m.offset} holds a secret"
    grants = read_all(monitor.kafka, t.grants)
    assert grants and all(b'"salt"' not in (m.value or b"") for m in grants)


def test_departments_act_through_the_portal_running_as_its_own_principal(
    exchange: SecureExchange, tmp_path: Path
) -> None:
    """Issue 22: on the secure platform the portal, as principal ``portal`` with the ACLs
    `acl sync` gives it, is how departments change grants; what it writes is signed by its
    registered key on portal.<replica>, and the CLI's --as is the operator's alone."""
    password = tmp_path / "password"
    password.write_text("长城-correct-horse-9", encoding="utf-8")
    operator_env = {**os.environ, **exchange.platform.dev_env, **exchange.platform.env("operator")}
    for dept, user, roles in (
        (exchange.late, "wang", "applicant"),
        (exchange.provider, "li", "approver"),
    ):
        made = subprocess.run(
            [
                str(EXCHANGE),
                "--config",
                str(exchange.config),
                "portal",
                "accounts",
                "add",
                dept,
                user,
                "--roles",
                roles,
                "--password-file",
                str(password),
            ],
            env=operator_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stdout + made.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "portal.log").open("wb")
    portal = subprocess.Popen(
        [
            str(EXCHANGE),
            "--config",
            str(exchange.config),
            "portal",
            "serve",
            "--replica",
            f"{exchange.uid}-sec",
            "--port",
            str(port),
        ],
        env={**os.environ, **exchange.platform.dev_env, **exchange.platform.env("portal")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert portal.poll() is None, (tmp_path / "portal.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"{url}/api/v1/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)

        def session(dept: str, user: str) -> dict[str, str]:
            body = json.dumps(
                {"department": dept, "username": user, "password": "长城-correct-horse-9"}
            ).encode()
            request = urllib.request.Request(
                f"{url}/api/v1/session",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                cookie = answer.headers["set-cookie"].split(";")[0]
                return {
                    "Cookie": cookie,
                    "X-CSRF-Token": json.loads(answer.read())["csrf_token"],
                    "Content-Type": "application/json",
                }

        def post(headers: dict[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(
                url + path, data=json.dumps(body).encode(), method="POST", headers=headers
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                found: dict[str, Any] = json.loads(answer.read())
                return found

        now = dt.datetime.now(dt.UTC)
        wang = session(exchange.late, "wang")
        made = post(
            wang,
            "/api/v1/grants",
            {
                "entry": exchange.project.entry_id,
                "fields": ["citizen_id", "region_code"],
                "purpose": "data_verification",
                "legal_basis": "测试依据",
                "valid_from": now.isoformat(),
                "valid_until": (now + dt.timedelta(days=1)).isoformat(),
            },
        )
        approved = post(
            session(exchange.provider, "li"), f"/api/v1/grants/{made['id']}/approve", {}
        )
        assert approved["state"] == "approved"
        assert read_grants(exchange.operator).grants[made["id"]].state == "approved"
    finally:
        portal.terminate()
        portal.wait(timeout=60)
    op = exchange.operator
    result = verify(read_trail(op), load_key(op), read_register(op).book)
    chain = result.chains[f"portal.{exchange.uid}-sec"]
    assert chain.broken is None and chain.events >= 4  # 2 logins, the request, the approval
    # The accounts made at the operator's shell: on the operator's chain, signed by it.
    assert result.chains["security.portal-accounts"].broken is None
    # At a shell, a department's principal cannot claim to be the provider.
    refused = subprocess.run(
        [
            str(EXCHANGE),
            "--config",
            str(exchange.config),
            "grant",
            "revoke",
            made["id"],
            "--as",
            exchange.provider,
        ],
        env={
            **os.environ,
            **exchange.platform.dev_env,
            **exchange.env(f"consumer-{exchange.reader}"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "exchange portal serve" in refused.stderr


def test_a_department_cannot_read_or_forge_anothers_connector_positions(
    exchange: SecureExchange,
) -> None:
    """Issue 21: as ``connector-scjg``, writing rsj's saved position made rsj's connector
    resume past everything new, silently. Positions live on a topic per department now: the
    broker refuses the other department, and a position that is not the connector's own (here
    written by a super user, as a stand-in for any tampering) is refused loudly."""
    op = exchange.operator
    own = op.topics.connector_offsets_of(exchange.provider)
    other = exchange.settings(f"connector-{exchange.other}")
    forged = json.dumps(
        {
            "connector": f"{exchange.uid}-conn",
            "department": exchange.provider,
            "entry": exchange.project.entry_id,
            "position": {"id": 999999, "updated": "2099-01-01 00:00:00"},
            "saved_at_ms": 1,
        }
    ).encode()
    assert produce_error(other, own, f"{exchange.uid}-conn", forged, 0) == (
        "TOPIC_AUTHORIZATION_FAILED"
    )
    # This department provides nothing here, so its connector may use no group at all; a
    # consumer principal with an active grant, in its own group, is refused the topic itself.
    peek = f"exchange-reader-{exchange.uid}-peek"
    refusals = ("GROUP_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED")
    assert read_error(other, own, peek) in refusals
    reader = exchange.settings(f"consumer-{exchange.reader}")
    assert read_error(reader, own, f"{exchange.reader}.peek") == "TOPIC_AUTHORIZATION_FAILED"

    inbox = exchange.project.root / "inbox"
    inbox.mkdir(exist_ok=True)
    connector = exchange.project.write(
        "config/connectors/provider.yaml",
        json.dumps(
            {
                "id": f"{exchange.uid}-conn",
                "department": exchange.provider,
                "system": "测试系统",
                "entry": exchange.project.entry_id,
                "source": {"type": "file", "folder": str(inbox)},
                "fields": POPULATION_FIELDS,
            },
            ensure_ascii=False,
        ),
    )
    as_provider = {**exchange.env(f"connector-{exchange.provider}")}

    def check() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **exchange.platform.dev_env, **as_provider}
        return subprocess.run(
            [str(EXCHANGE), "--config", str(exchange.config), "connector", "check", str(connector)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    clean = check()
    assert clean.returncode == 0 and "none (starts fresh)" in clean.stdout, clean.stdout
    tampered = json.dumps({**json.loads(forged), "department": exchange.other}).encode()
    publish(op.kafka, own, [(f"{exchange.uid}-conn", tampered)])
    refused = check()
    assert refused.returncode != 0
    message = " ".join((refused.stdout + refused.stderr).split())
    assert "FORGED_POSITION" in message or "refused: saved position" in message, message
    assert f"department '{exchange.other}'" in message
