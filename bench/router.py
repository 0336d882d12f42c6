"""Router throughput as a ratio to a raw confluent-kafka passthrough; one and two workers.

    .venv/bin/python -m bench.router throughput [--records 50000] [--rounds 2]
    .venv/bin/python -m bench.router workers [--records 50000]

``throughput``: one entry (4 partitions) with 3 grants, each projecting fields and masking some,
audit on. The same pre-encoded source records are routed by one ``exchange router`` worker and
copied by the baseline: a confluent-kafka consumer that produces every record's bytes to 3
topics with the router's producer settings and commits after each batch. Rates are measured
from the first delivery to the last (startup excluded), by polling the delivery topics' end
offsets. Target: ratio >= 0.5.

``workers``: the same entry routed by two workers at once against one. Target: >= 1.6x.

Needs the local platform (``exchange dev up``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from exchange.config import ExchangeSettings
from exchange.kafka.admin import Admin, TopicSpec, plan_topics
from exchange.routing.report import router_backlog
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.routing.conftest import RouterEnv, person

PARTITIONS = 4
GRANTS: list[tuple[str, dict[str, Any]]] = [
    (
        "mzj",
        {
            "fields": ["citizen_id", "name", "region_code"],
            "masks": {"citizen_id": {"keep": {"first": 6, "last": 4}}},
        },
    ),
    (
        "county",
        {
            "fields": ["citizen_id", "region_code", "birth_date", "gender"],
            "masks": {"citizen_id": "hash"},
        },
    ),
    ("ops", {"fields": ["citizen_id", "name", "address", "phone"], "masks": {"phone": "hash"}}),
]


def setup(work: Path) -> RouterEnv:
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / "schemas", work / "schemas")
    project = IsolatedProject(Project(work))
    project.edit(f"config/catalog/{project.uid}.yaml", "partitions: 2", f"partitions: {PARTITIONS}")
    env = RouterEnv(project)
    for consumer, terms in GRANTS:
        env.grant(env.consumers[consumer], f"bench-{consumer}", **terms)
    return env


def source_records(env: RouterEnv, n: int) -> list[tuple[str, bytes]]:
    regions = ("140602", "140603", "140621", "140622")
    # Birth dates stay in the past (a future one is rejected); keys repeat beyond 15,000.
    return [env.change(person(i % 15_000, regions[i % 4])) for i in range(n)]


def produce_all(settings: ExchangeSettings, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = Producer(settings.kafka.client_config(**{"linger.ms": 20, "acks": "all"}))
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0


def wait_for_writes(
    admin: Admin, topics: list[str], total: int, alive: Callable[[], bool], timeout: float = 900
) -> float:
    """Records/s over new ``topics``, from the first record written to the ``total``-th."""
    tps = [(t, p) for t in topics for p in range(PARTITIONS)]
    first_at = None
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        written = sum(admin.end_offsets(tps).values())
        now = time.perf_counter()
        if written > 0 and first_at is None:
            first_at, first_written = now, written
        if written >= total:
            assert first_at is not None
            return (written - first_written) / max(now - first_at, 1e-6)
        if now - last_report > 5:
            print(f"  ... {written:,} of {total:,}", flush=True)
            last_report = now
        if not alive():
            raise SystemExit("the process under test exited early")
        time.sleep(0.05)
    raise SystemExit(f"timed out: {total:,} records not written in {timeout:.0f} s")


def passthrough(env: RouterEnv, targets: list[str], n: int) -> float:
    """The baseline: consume the source, produce each record's bytes to ``targets``."""
    settings = env.settings
    admin = Admin(settings.kafka)
    admin.apply(
        plan_topics([TopicSpec(t, PARTITIONS, 1, {}) for t in targets], admin.topic_states(targets))
    )
    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": f"bench-copy-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    producer = Producer(
        settings.kafka.client_config(
            **{"enable.idempotence": True, "acks": "all", "linger.ms": 5, "compression.type": "lz4"}
        )
    )
    consumer.subscribe([env.project.source_topic])
    copied = 0
    first_at = None
    while copied < n:
        batch = consumer.consume(500, timeout=1.0)
        for msg in batch:
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"passthrough read failed: {msg.error()}")
            if first_at is None:
                first_at = time.perf_counter()
            for topic in targets:
                while True:
                    try:
                        producer.produce(
                            topic, key=msg.key(), value=msg.value(), partition=msg.partition()
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            copied += 1
        producer.poll(0)
        if batch:
            consumer.commit(asynchronous=True)
    producer.flush(120)
    consumer.commit(asynchronous=False)
    consumer.close()
    assert first_at is not None
    return n / (time.perf_counter() - first_at)


def route(env: RouterEnv, records: list[tuple[str, bytes]], workers: int) -> float:
    """Records/s routed by ``workers`` router workers (deliveries of all grants, summed).

    The workers start on the empty source, so every grant is handed over to the live stream
    before the records arrive: the live path is measured, not the backfill.
    """
    topics = [env.delivery_topic(env.consumers[c]) for c, _t in GRANTS]
    processes: list[subprocess.Popen[bytes]] = []
    for w in range(workers):
        env.start_router(f"bench{time.monotonic_ns()}-{w}")
        assert env.process is not None
        processes.append(env.process)
    try:
        admin = Admin(env.settings.kafka)

        def ready() -> bool:
            counts = admin.partition_counts()
            if any(counts.get(t) != PARTITIONS for t in topics):
                return False
            backlog = router_backlog(env.settings, env.catalog)
            return (
                backlog.backfilling == 0
                and admin.group_members(env.settings.router.group_id) == workers
            )

        env.wait_for("the router workers to be ready", ready, 180)
        produce_all(env.settings, env.project.source_topic, records)
        rate = wait_for_writes(
            admin,
            topics,
            len(records) * len(GRANTS),
            lambda: all(p.poll() is None for p in processes),
        )
        return rate / len(GRANTS)
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(timeout=60)
        env.process = None


def throughput(args: argparse.Namespace) -> None:
    ours, base = [], []
    for round_no in range(1, args.rounds + 1):
        work = Path(tempfile.mkdtemp(prefix="exchange-bench-router-"))
        env = setup(work)
        print(f"round {round_no}: {args.records:,} source records", flush=True)
        ours.append(route(env, source_records(env, args.records), workers=1))
        print(f"  router, 3 grants, audit on: {ours[-1]:,.0f} records/s", flush=True)
        targets = [f"bench.copy.{env.uid}.{i}" for i in range(len(GRANTS))]
        base.append(passthrough(env, targets, args.records))
        print(f"  passthrough to 3 topics: {base[-1]:,.0f} records/s", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    b, o = statistics.median(base), statistics.median(ours)
    print()
    print("| records | passthrough (rec/s) | router (rec/s) | ratio | target |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {args.records:,} | {b:,.0f} | {o:,.0f} | {o / b:.2f} | >= 0.5 |")


def scaling(args: argparse.Namespace) -> None:
    rates: dict[int, float] = {}
    for workers in (1, 2):
        work = Path(tempfile.mkdtemp(prefix="exchange-bench-router-"))
        env = setup(work)
        print(f"{workers} worker(s): {args.records:,} source records", flush=True)
        rates[workers] = route(env, source_records(env, args.records), workers)
        print(f"  {rates[workers]:,.0f} records/s", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| records | 1 worker (rec/s) | 2 workers (rec/s) | speed-up | target |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {args.records:,} | {rates[1]:,.0f} | {rates[2]:,.0f} | "
        f"{rates[2] / rates[1]:.2f}x | >= 1.6x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput", help="router against a raw passthrough")
    t.add_argument("--records", type=int, default=50_000)
    t.add_argument("--rounds", type=int, default=2)
    w = sub.add_parser("workers", help="two router workers against one")
    w.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    {"throughput": throughput, "workers": scaling}[args.what](args)


if __name__ == "__main__":
    main()
