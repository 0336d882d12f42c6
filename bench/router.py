"""Router throughput as a ratio to a raw confluent-kafka passthrough; one and two workers;
end-to-end latency at a steady rate against a raw produce-to-consume.

    .venv/bin/python -m bench.router throughput [--records 50000] [--rounds 2]
    .venv/bin/python -m bench.router workers [--records 50000]
    .venv/bin/python -m bench.router latency [--rate 2000] [--seconds 30] [--batch-wait S]

``throughput``: one entry (4 partitions) with 3 grants, each projecting fields and masking some,
audit on. The same pre-encoded source records are routed by one ``exchange router`` worker and
copied by the baseline: a confluent-kafka consumer that produces every record's bytes to 3
topics with the router's producer settings and commits after each batch. Rates are measured
from the first delivery to the last (startup excluded), by polling the delivery topics' end
offsets. Target: ratio >= 0.5.

``workers``: the same entry routed by two workers at once against one. Target: >= 1.6x.

``latency``: records sent at a steady rate with the connectors' producer settings (acks=all,
idempotent, lz4, linger 20 ms), each timed from its send to its arrival at a consumer of one
grant's delivery topic (matched by event id), against the same producer and consumer on a plain
topic. The first seconds (warm-up) are left out. ``--batch-wait`` sets the router's
``batch_wait_s`` (how long a batch waits to fill; default from config/exchange.yaml). Target:
p99 ratio <= 3.

Needs the local platform (``exchange dev up``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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


REGIONS = ("140602", "140603", "140621", "140622")


#: Rows have this many different keys (persons); beyond it they repeat.
DISTINCT_KEYS = 15_000


def row(i: int) -> dict[str, Any]:
    # Birth dates stay in the past (a future one is rejected).
    return person(i % DISTINCT_KEYS, REGIONS[i % 4])


def source_records(env: RouterEnv, n: int) -> list[tuple[str, bytes]]:
    return [env.change(row(i)) for i in range(n)]


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
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"passthrough read failed: {err}")
            if first_at is None:
                first_at = time.perf_counter()
            for topic in targets:
                while True:
                    try:
                        producer.produce(
                            topic, key=msg.key(), value=msg.value(), partition=msg.partition() or 0
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


@contextlib.contextmanager
def running_router(env: RouterEnv, workers: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``workers`` router workers, started on the empty source and ready to route.

    Ready: every grant's delivery topic exists, every backfill has handed over to the live
    stream and all workers joined the group, so what follows measures the live path.
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
        yield processes
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(timeout=60)
        env.process = None


def route(env: RouterEnv, records: list[tuple[str, bytes]], workers: int) -> float:
    """Records/s routed by ``workers`` router workers (deliveries of all grants, summed)."""
    topics = [env.delivery_topic(env.consumers[c]) for c, _t in GRANTS]
    with running_router(env, workers) as processes:
        produce_all(env.settings, env.project.source_topic, records)
        rate = wait_for_writes(
            Admin(env.settings.kafka),
            topics,
            len(records) * len(GRANTS),
            lambda: all(p.poll() is None for p in processes),
        )
        return rate / len(GRANTS)


# -- latency ---------------------------------------------------------------------------------

#: The connectors' producer settings (connectors/config.py PublishSettings defaults).
CONNECTOR_PRODUCER = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
}


class Arrivals:
    """A consumer thread noting when each record arrives, by an id taken from the record."""

    def __init__(
        self, settings: ExchangeSettings, topic: str, ident: Callable[[Any], str | None]
    ) -> None:
        self.times: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            settings.kafka.client_config(
                **{
                    "group.id": f"bench-latency-{time.monotonic_ns()}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "latest",
                }
            )
        )
        # Noted by the consuming thread: calling the consumer from two threads can block.
        self._assigned = threading.Event()
        self._consumer.subscribe([topic], on_assign=lambda _c, _p: self._assigned.set())
        self._ident = ident
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def assigned(self) -> bool:
        return self._assigned.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            # poll, not consume(n): a batch call waits for n records or its timeout, which
            # would add its own delay to every arrival.
            msg = self._consumer.poll(0.1)
            if msg is None:
                continue
            now = time.time()
            if msg.error() is None and (key := self._ident(msg)) is not None:
                self.times.setdefault(key, now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def send_steadily(
    settings: ExchangeSettings, topic: str, records: list[tuple[str, bytes, str]], rate: float
) -> dict[str, float]:
    """Send ``(key, value, id)`` at ``rate`` records/s; the wall time each was handed over."""
    producer = Producer(settings.kafka.client_config(**CONNECTOR_PRODUCER))
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, (key, value, ident) in enumerate(records):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[ident] = time.time()
        producer.produce(topic, key=key.encode(), value=value)
        producer.poll(0)
    assert producer.flush(60) == 0
    return sent


def latencies(
    sent: dict[str, float], arrivals: Arrivals, skip: int, timeout: float = 120
) -> list[float]:
    """Milliseconds from send to arrival of every record after the first ``skip``."""
    ids = list(sent)[skip:]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(arrivals.times) < len(sent):
        time.sleep(0.2)
    missing = [i for i in ids if i not in arrivals.times]
    if missing:
        raise SystemExit(f"{len(missing):,} of {len(ids):,} records never arrived")
    return sorted((arrivals.times[i] - sent[i]) * 1000 for i in ids)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(ordered: list[float]) -> str:
    return f"p50 {percentile(ordered, 0.5):.1f} ms, p99 {percentile(ordered, 0.99):.1f} ms"


def latency(args: argparse.Namespace) -> None:
    if args.batch_wait is not None:
        # The router workers are subprocesses: they take it from the environment.
        os.environ["EXCHANGE_ROUTER__BATCH_WAIT_S"] = str(args.batch_wait)
    work = Path(tempfile.mkdtemp(prefix="exchange-bench-latency-"))
    env = setup(work)
    n = int(args.rate * args.seconds)
    skip = int(args.rate * args.warmup)
    routed = [(*env.change(row(i), event=f"lat-{i}"), f"lat-{i}") for i in range(n)]
    print(f"{n:,} records at {args.rate:,.0f}/s; the first {args.warmup:.0f} s left out")

    plain = f"bench.latency.{env.uid}"
    admin = Admin(env.settings.kafka)
    admin.apply(plan_topics([TopicSpec(plain, PARTITIONS, 1, {})], admin.topic_states([plain])))
    arrivals = Arrivals(env.settings, plain, lambda m: (m.key() or b"").decode())
    env.wait_for("the baseline consumer's assignment", arrivals.assigned, 60)
    sent = send_steadily(env.settings, plain, [(i, v, i) for _k, v, i in routed], args.rate)
    base = latencies(sent, arrivals, skip)
    arrivals.close()
    print(f"  produce -> consume: {summary(base)}")

    def event_id(msg: Any) -> str | None:
        value = msg.value()
        return None if value is None else str(env.lookup.decode(value)["event_id"])

    with running_router(env, 1):
        topic = env.delivery_topic(env.consumers["mzj"])
        arrivals = Arrivals(env.settings, topic, event_id)
        env.wait_for("the delivery consumer's assignment", arrivals.assigned, 60)
        sent = send_steadily(env.settings, env.project.source_topic, routed, args.rate)
        ours = latencies(sent, arrivals, skip)
        arrivals.close()
    print(f"  publish -> router -> consumer: {summary(ours)}")
    shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        "| rate (rec/s) | router batch_wait_s | raw p50 (ms) | raw p99 (ms) | exchange p50 (ms) "
        "| exchange p99 (ms) | p99 ratio | target |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    b50, b99, o50, o99 = (percentile(x, q) for x in (base, ours) for q in (0.5, 0.99))
    wait = env.settings.router.batch_wait_s if args.batch_wait is None else args.batch_wait
    print(
        f"| {args.rate:,.0f} | {wait} "
        f"| {b50:.1f} | {b99:.1f} | {o50:.1f} | {o99:.1f} | {o99 / b99:.1f} | <= 3 |"
    )


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
    lat = sub.add_parser("latency", help="end-to-end latency against raw produce-to-consume")
    lat.add_argument("--rate", type=float, default=2000)
    lat.add_argument("--seconds", type=float, default=30)
    lat.add_argument("--warmup", type=float, default=5)
    lat.add_argument("--batch-wait", type=float, default=None)
    args = parser.parse_args()
    {"throughput": throughput, "workers": scaling, "latency": latency}[args.what](args)


if __name__ == "__main__":
    main()
