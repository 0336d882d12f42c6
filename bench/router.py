"""Router throughput as a ratio to a raw confluent-kafka passthrough; one and two workers;
end-to-end latency at a steady rate against a raw produce-to-consume.

    .venv/bin/python -m bench.router throughput [--records 200000] [--rounds 3]
    .venv/bin/python -m bench.router workers [--records 200000]
    .venv/bin/python -m bench.router latency [--rate 2000] [--seconds 30] [--batch-wait S]

``throughput``: one entry (4 partitions) with 3 grants, each projecting fields and masking some,
audit on. The same pre-encoded source records, written before the clock starts, are read by:

- the router: ``exchange router`` workers that joined the group and handed their backfills
  over on the empty source, then were stopped; restarted once the records are written, they
  route them on the live path. Timed from the first delivery to the moment the group's committed
  source offsets reach the end (every delivery committed, readable by ``read_committed``).
- the passthrough (the physical limit): a confluent-kafka consumer that produces every record's
  bytes to 3 topics with the router's producer settings (idempotent, acks=all, linger
  ``router.linger_ms``) and commits after each batch, timed from the first record read to the
  last acknowledged.
- the ceiling: the router's own deliveries, read back, produced with no routing work at all (to
  the partitions the router chose) by the same loop in Kafka transactions that commit the
  source offsets every 0.5 s, as the router's checkpoints do, with the router's producer
  settings; what the router could reach if routing cost nothing.

Targets: router / passthrough >= 0.5 (median of the rounds), router / ceiling >= 0.8.

200,000 records a round by default: with 50,000 a round lasted 0.25-0.6 s, a few checkpoints,
and the same code measured 74,000-158,000 records/s between rounds; from 100,000 on, the rounds
agree within about 15% (docs/benchmarks.md).

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
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from exchange._kernel import Deliveries
from exchange.config import ExchangeSettings
from exchange.kafka.admin import Admin, TopicSpec, plan_topics
from exchange.kafka.transactions import TransactionalProducer
from exchange.routing.report import router_backlog
from exchange.routing.worker import producer_overrides
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.routing.conftest import RouterEnv, person, plain_committed

PARTITIONS = 4
GRANTS: list[tuple[str, dict[str, Any]]] = [
    (
        "mzj",
        {
            "fields": ["citizen_id", "name", "region_code"],
            "masks": {"citizen_id": {"keep": {"first": 6, "last": 4}}, "name": "none"},
        },
    ),
    (
        "county",
        {
            "fields": ["citizen_id", "name", "region_code", "birth_date", "gender"],
            "masks": {"citizen_id": "hash", "name": "none"},
        },
    ),
    ("ops", {"fields": ["citizen_id", "name", "address", "phone"], "masks": {"phone": "hash"}}),
]


def setup(work: Path) -> RouterEnv:
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / "schemas", work / "schemas")
    project = IsolatedProject(Project(work))
    project.edit(f"config/catalog/{project.uid}.yaml", "partitions: 2", f"partitions: {PARTITIONS}")
    # A source prefix of its own: the shared dev broker holds the source topics of every
    # earlier test, which a router subscribed to all of `src.` would read (and hold back, as
    # not in this catalog) before it got to the benchmark's records.
    project.edit(
        "config/exchange.yaml", "source_prefix: src.", f"source_prefix: src.{project.uid}."
    )
    project.source_topic = f"src.{project.uid}.{project.entry_id}"
    project.subject = f"{project.source_topic}-value"
    env = RouterEnv(project)
    for consumer, terms in GRANTS:
        env.grant(env.consumers[consumer], f"bench-{consumer}", **terms)
    return env


REGIONS = ("140602", "140603", "140621", "140622")


#: Rows have this many different keys (persons); beyond it they repeat.
DISTINCT_KEYS = 15_000


def row(i: int) -> dict[str, Any]:
    # Birth dates stay in the past (a future one is rejected). A person's next record has
    # another name and phone, which every grant sees (with per-key state, a record that
    # changes nothing a grant sees is not delivered to it); the region, part of the citizen
    # ID, stays.
    return {
        **person(i % DISTINCT_KEYS, REGIONS[i % 4]),
        "name": f"张{i}",
        "phone": f"138{i:08d}",
    }


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


def router_producer(settings: ExchangeSettings) -> dict[str, Any]:
    """The router's producer settings (kafka/transactions.py, routing/worker.py)."""
    return {"enable.idempotence": True, "acks": "all", **producer_overrides(settings.router)}


def passthrough(env: RouterEnv, targets: list[str], n: int) -> float:
    """The baseline: consume the source, produce each record's bytes to ``targets``."""
    settings = env.settings
    make_topics(env, targets)
    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": f"bench-copy-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    producer = Producer(settings.kafka.client_config(**router_producer(settings)))
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


def make_topics(env: RouterEnv, topics: list[str]) -> None:
    admin = Admin(env.settings.kafka)
    admin.apply(
        plan_topics([TopicSpec(t, PARTITIONS, 1, {}) for t in topics], admin.topic_states(topics))
    )


ByPosition = dict[tuple[int, int], list[tuple[str, bytes | None, bytes | None, Any, int]]]


def router_deliveries(env: RouterEnv, copies: dict[str, str]) -> ByPosition:
    """What the router delivered, by source ``(partition, offset)``, each delivery aimed at its
    topic's copy in ``copies``."""
    out: ByPosition = {}
    positions = env.source_positions()
    #: Per grant: its position tokens -> source positions (tokens are keyed per grant).
    sources: dict[str, dict[str, str]] = {}
    for topic, copy in copies.items():
        for msg in plain_committed(env.settings, topic):
            value = msg.value()
            if value is None:
                headers = dict(msg.headers() or [])
                grant = headers["exchange.grant"].decode()
                token = headers["exchange.source"].decode()
            else:
                decoded = env.lookup.decode(value)
                grant, token = str(decoded["grant_id"]), str(decoded["source_position"])
            if grant not in sources:
                sources[grant] = env.tokens(grant, "position", positions)
            _t, partition, offset = sources[grant][token].rsplit("/", 2)
            item = (copy, msg.key(), value, msg.headers(), int(msg.partition() or 0))
            out.setdefault((int(partition), int(offset)), []).append(item)
    return out


def ceiling(env: RouterEnv, deliveries: ByPosition, n: int) -> float:
    """The router's deliveries produced with no routing: consume the source, produce each
    batch's deliveries the way the router does (per topic, handed to librdkafka directly when
    the router would be, ``kafka.native_produce``), in transactions that commit the source
    offsets every 0.5 s."""
    settings = env.settings
    make_topics(env, sorted({d[0] for ds in deliveries.values() for d in ds}))
    group = f"bench-ceiling-{time.monotonic_ns()}"
    consumer = Consumer(
        settings.kafka.client_config(
            **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )
    )
    txn = TransactionalProducer(
        settings.kafka.client_config(**router_producer(settings)),
        group,
        settings.kafka.request_timeout_s,
        native=settings.kafka.native_produce,
    )
    txn.open()
    consumer.subscribe([env.project.source_topic])
    copied, first_at, opened = 0, None, time.monotonic()
    txn.begin()
    while copied < n:
        # Batches as large as the router's.
        batch = consumer.consume(settings.router.batch_size, timeout=1.0)
        if batch and first_at is None:
            first_at = time.perf_counter()
        columns: dict[str, tuple[list[Any], list[Any], list[int], dict[int, Any]]] = {}
        for msg in batch:
            if msg.error() is not None:
                raise SystemExit(f"ceiling read failed: {msg.error()}")
            position = (int(msg.partition() or 0), int(msg.offset() or 0))
            for topic, key, value, headers, partition in deliveries.get(position, []):
                keys, values, partitions, by_index = columns.setdefault(topic, ([], [], [], {}))
                if headers:
                    by_index[len(keys)] = headers
                keys.append(key)
                values.append(value)
                partitions.append(partition)
            copied += 1
        for topic, (keys, values, partitions, by_index) in columns.items():
            txn.produce_all(topic, Deliveries.from_columns(keys, values, partitions, by_index))
        if time.monotonic() - opened >= 0.5 or copied >= n:
            positions = consumer.position(consumer.assignment())
            txn.send_offsets(positions, consumer.consumer_group_metadata())
            txn.commit()
            opened = time.monotonic()
            if copied < n:
                txn.begin()
    consumer.close()
    txn.close()
    assert first_at is not None
    return n / (time.perf_counter() - first_at)


@contextlib.contextmanager
def running_router(env: RouterEnv, workers: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``workers`` router workers, started on the empty source and ready to route.

    Ready: every grant's delivery topic exists, every backfill has handed over to the live
    stream and all workers joined the group, so what follows measures the live path.
    """
    topics = [env.delivery_topic(env.consumers[c]) for c, _t in GRANTS]
    processes = start_workers(env, workers)
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
        stop_workers(env, processes)


def cpu_times() -> tuple[int, int]:
    """``(busy, total)`` jiffies of the whole machine so far (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(since: tuple[int, int]) -> tuple[float, int]:
    """The share of the machine's CPU time busy since ``since`` (all processes: the broker,
    the router, this benchmark), and the number of cores."""
    busy, total = cpu_times()
    return (busy - since[0]) / max(total - since[1], 1), os.cpu_count() or 1


def start_workers(env: RouterEnv, workers: int) -> list[subprocess.Popen[bytes]]:
    processes = []
    for w in range(workers):
        env.start_router(f"bench{time.monotonic_ns()}-{w}")
        assert env.process is not None
        processes.append(env.process)
    return processes


def stop_workers(env: RouterEnv, processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        p.wait(timeout=60)
    env.process = None


def route(
    env: RouterEnv,
    records: list[tuple[str, bytes]],
    workers: int,
    on_start: Callable[[], None] = lambda: None,
) -> float:
    """Records/s routed by ``workers`` router workers on the live path (see the module doc);
    ``on_start`` is called as the workers are started (``bench.quality`` resumes its worker)."""
    with running_router(env, workers):
        pass  # joined, backfills handed over on the empty source; stopped again
    produce_all(env.settings, env.project.source_topic, records)
    print(f"  {len(records):,} source records written; routing them", flush=True)
    admin = Admin(env.settings.kafka)
    source = [(env.project.source_topic, p) for p in range(PARTITIONS)]
    ends = admin.end_offsets(source)
    delivered = [(env.delivery_topic(env.consumers[c]), p) for c, _t in GRANTS for p in range(4)]
    before = sum(admin.end_offsets(delivered).values())
    on_start()
    processes = start_workers(env, workers)
    try:
        first_at = None
        last_report = time.monotonic()
        while first_at is None:
            if sum(admin.end_offsets(delivered).values()) > before:
                first_at = time.perf_counter()
                cpu_at = cpu_times()
            elif not all(p.poll() is None for p in processes):
                raise SystemExit("a router worker exited early")
            time.sleep(0.005)
        done = 0
        while True:
            # Each look is an admin request (about 3 ms of this machine's 2 cores, which the
            # broker and the router share): every 50 ms, every 5 ms near the end.
            time.sleep(0.005 if done >= 0.8 * len(records) else 0.05)
            now = time.perf_counter()
            committed = admin.committed_offsets(env.settings.router.group_id)
            done = sum(min(committed.get(tp, 0), ends[tp]) for tp in source)
            if done >= len(records):
                rate = len(records) / (now - first_at)
                busy, cores = cpu_busy(cpu_at)
                print(f"  machine CPU busy while routing: {busy:.0%} of {cores} cores", flush=True)
                for line in phase_report(env, len(records)):
                    print(f"  {line}", flush=True)
                return rate
            if time.monotonic() - last_report > 5:
                print(f"  ... {done:,} of {len(records):,} committed", flush=True)
                last_report = time.monotonic()
            if not all(p.poll() is None for p in processes):
                raise SystemExit("a router worker exited early")
    finally:
        stop_workers(env, processes)


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
        for line in phase_report(env, n):
            print(f"  {line}", flush=True)
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


PHASE_SUM = 'exchange_router_batch_phase_seconds_sum{phase="PHASE"}'


def phase_report(env: RouterEnv, records: int) -> list[str]:
    """Where the last started worker spent its time, from its own metrics: µs per record in
    each phase of a batch, and the checkpoints (count and mean duration)."""
    found = re.findall(r"/metrics on port (\d+)", env.log.read_text(errors="replace"))
    if not found:
        return ["(the worker's metrics port is not in its log)"]
    with urllib.request.urlopen(f"http://127.0.0.1:{found[-1]}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    sums: dict[str, float] = {}
    for name, labels, value in re.findall(r"^(exchange_router_\w+)(\{[^}]*\})? (\S+)$", text, re.M):
        sums[name + labels] = float(value)
    per_record = {
        phase: sums.get(PHASE_SUM.replace("PHASE", phase), 0) / records * 1e6
        for phase in ("grants", "route", "stage")
    }
    phases = ", ".join(f"{phase} {us:.1f}" for phase, us in per_record.items())
    batches = sums.get("exchange_router_batch_records_count", 0)
    checkpoints = sums.get("exchange_router_checkpoint_seconds_count", 0)
    mean = sums.get("exchange_router_checkpoint_seconds_sum", 0) / max(checkpoints, 1)
    slow = {
        ms: checkpoints
        - sums.get(f'exchange_router_checkpoint_seconds_bucket{{le="{ms / 1000}"}}', 0)
        for ms in (25, 50)
    }
    retried = sums.get('exchange_router_checkpoints_total{outcome="retried"}', 0)
    return [
        f"worker: µs per record in batch phases: {phases}; "
        f"{batches:,.0f} batches ({records / max(batches, 1):,.0f} records each)",
        f"worker: {checkpoints:,.0f} checkpoints, {mean * 1000:.0f} ms each on average; "
        f"{slow[25]:,.0f} over 25 ms, {slow[50]:,.0f} over 50 ms; {retried:,.0f} retried",
    ]


def throughput(args: argparse.Namespace) -> None:
    ours, base, ceil = [], [], []
    for round_no in range(1, args.rounds + 1):
        work = Path(tempfile.mkdtemp(prefix="exchange-bench-router-"))
        env = setup(work)
        print(f"round {round_no}: {args.records:,} source records", flush=True)
        ours.append(route(env, source_records(env, args.records), workers=1))
        print(f"  router, 3 grants, audit on: {ours[-1]:,.0f} records/s", flush=True)
        targets = [f"bench.copy.{env.uid}.{i}" for i in range(len(GRANTS))]
        base.append(passthrough(env, targets, args.records))
        print(f"  passthrough to 3 topics: {base[-1]:,.0f} records/s", flush=True)
        copies = {
            env.delivery_topic(env.consumers[c]): f"bench.ceiling.{env.uid}.{i}"
            for i, (c, _t) in enumerate(GRANTS)
        }
        deliveries = router_deliveries(env, copies)
        count = sum(len(d) for d in deliveries.values())
        if count != args.records * len(GRANTS):
            raise SystemExit(f"the router delivered {count:,} records, not {args.records * 3:,}")
        ceil.append(ceiling(env, deliveries, args.records))
        print(f"  ceiling (the router's deliveries, no routing): {ceil[-1]:,.0f} records/s")
        shutil.rmtree(work, ignore_errors=True)
    b, o, c = statistics.median(base), statistics.median(ours), statistics.median(ceil)
    print()
    print(
        "| records | passthrough (rec/s) | ceiling (rec/s) | router (rec/s) "
        "| router / passthrough | router / ceiling |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.records:,} | {b:,.0f} | {c:,.0f} | {o:,.0f} | {o / b:.2f} (>= 0.5) "
        f"| {o / c:.2f} (>= 0.8) |"
    )
    ratios = ", ".join(f"{x / y:.2f}" for x, y in zip(ours, base, strict=True))
    print(f"per round, router / passthrough: {ratios}")


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
    t.add_argument("--records", type=int, default=200_000)
    t.add_argument("--rounds", type=int, default=3)
    w = sub.add_parser("workers", help="two router workers against one")
    w.add_argument("--records", type=int, default=200_000)
    lat = sub.add_parser("latency", help="end-to-end latency against raw produce-to-consume")
    lat.add_argument("--rate", type=float, default=2000)
    lat.add_argument("--seconds", type=float, default=30)
    lat.add_argument("--warmup", type=float, default=5)
    lat.add_argument("--batch-wait", type=float, default=None)
    args = parser.parse_args()
    {"throughput": throughput, "workers": scaling, "latency": latency}[args.what](args)


if __name__ == "__main__":
    main()
