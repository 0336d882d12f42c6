"""Router throughput and memory with 10,000 active grants over 1,000 entries, against 10 grants.

    .venv/bin/python -m bench.many_grants [--entries 1000] [--consumers 10] [--records 30000]

Two isolated catalogs on the local platform, each routed by one ``exchange router`` worker, that
differ only in how many entries and grants they hold:

- many: ``--entries`` entries (one source partition each, each with its own record schema), and
  every one of ``--consumers`` departments granted every entry: entries x consumers grants, each
  with its own delivery topic and schema;
- baseline: one entry with ``--entries`` source partitions and the same ``--consumers`` grants.

Both sides have as many source and delivery partitions, and route the same ``--records``
records with the same fan-out (one delivery per consumer; the grants project and mask as in the
throughput benchmark), spread evenly over their partitions: record ``i`` goes to entry ``i`` on
the many side and, by its key, to partition ``i`` on the baseline. So both make the broker
append to as many partitions per batch, and the ratio shows what holding 1,000 times the grants
costs the router. (Writing a batch to thousands of partitions costs the broker far more than
writing it to a few, whatever the router holds: see docs/benchmarks.md.)

Rates are measured from the first delivery to the last, by polling the delivery topics' end
offsets. The router's resident memory is read from ``/proc/<pid>/status`` once it has routed
everything (``VmRSS``, and the peak ``VmHWM``). Targets: ratio >= 0.9, RSS <= 300 MB.

Each side's 11,000 partitions need a broker with more heap than the tests' platform, and the
broker keeps a file open per partition: use a platform of its own (see docs/benchmarks.md). Each
side's topics are deleted once it was measured, so the two never exist together.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from bench.router import DISTINCT_KEYS, GRANTS, row
from exchange.audit.events import Happening
from exchange.audit.writer import AuditWriter, OutRecord
from exchange.catalog.apply import apply_catalog, source_topic
from exchange.catalog.load import Catalog, load_catalog
from exchange.config import ExchangeSettings
from exchange.grants.model import Actor, GrantRequest
from exchange.grants.rules import approve, new_grant
from exchange.grants.store import grant_summary
from exchange.kafka.admin import Admin
from exchange.kafka.producing import POLL_EVERY, produce
from exchange.kafka.registry import Registry
from exchange.kafka.wire import AvroCodec
from exchange.routing.deliveries import delivery_topic
from exchange.routing.report import router_backlog
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.connectors.conftest import _RULES
from tests.integration.routing.conftest import change_value, router_command

#: Grants written per audit transaction while setting up.
GRANTS_PER_WRITE = 500
#: The broker's file.delete.delay.ms (60 s), and a margin.
DELETE_WAIT_S = 90


class Side:
    """One isolated catalog of ``entries`` entries of ``partitions`` partitions each, every
    entry granted to every consumer."""

    def __init__(
        self, work: Path, entries: int, consumers: int, partitions: int, heaptrack: bool = False
    ) -> None:
        self.work, self.heaptrack = work, heaptrack
        shutil.copytree(ROOT / "config", work / "config")
        shutil.copytree(ROOT / "schemas", work / "schemas")
        project = IsolatedProject(Project(work))
        uid = self.uid = project.uid
        self.partitions = partitions
        self.project = project
        self.consumers = [f"{uid}_c{i}" for i in range(consumers)]
        project.write(
            "config/departments.yaml",
            "departments:\n"
            f"  - {{id: {uid}, name: 测试公安, level: city, region_code: '140600'}}\n"
            + "".join(
                f"  - {{id: {c}, name: 部门{i}, level: city, region_code: '140600'}}\n"
                for i, c in enumerate(self.consumers)
            ),
        )
        template = (project.schemas / "gongan" / "resident_population.avsc").read_text("utf-8")
        self.entries = [f"{uid}.e{n:04d}" for n in range(entries)]
        for n in range(entries):
            # A schema of its own per entry, as departments' entries have.
            project.write(
                f"schemas/avro/{uid}/e{n:04d}.avsc",
                template.replace("gov.shuozhou.gongan", f"bench.{uid}.e{n:04d}"),
            )
        (project.config / "catalog" / f"{uid}.yaml").unlink()
        project.write(
            f"config/catalog/{uid}.yaml",
            "entries:\n"
            + "".join(
                f"  - id: {e}\n"
                f"    title: 测试人口{n}\n"
                f"    provider: {uid}\n"
                f"    schema: {uid}/e{n:04d}.avsc\n"
                "    key: citizen_id\n"
                "    sharing: conditional\n"
                "    update_cycle: daily\n"
                f"    partitions: {partitions}\n"
                "    retention: {days: 7, compaction: true}\n" + _RULES
                for n, e in enumerate(self.entries)
            ),
        )
        project.edit("config/exchange.yaml", "group_id: exchange-router", f"group_id: router-{uid}")
        project.edit("config/exchange.yaml", "operators: [dsj]", f"operators: [{uid}]")
        self.settings: ExchangeSettings = project.settings()
        key = self.settings.resolve(self.settings.audit.key_file or Path("x"))
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(uuid.uuid4().hex * 2 + "\n", encoding="ascii")
        print(f"  catalog: {entries:,} entries", flush=True)
        self.catalog: Catalog = load_catalog(self.settings).require_valid()
        apply_catalog(self.catalog, self.settings)
        registry = Registry(self.settings.registry)
        self.codecs: list[AvroCodec] = []
        for e in self.entries:
            latest = registry.latest(f"{source_topic(self.settings.topics, e)}-value")
            assert latest is not None
            self.codecs.append(AvroCodec(latest.schema_id, latest.schema))
        #: One per grant (its generation's topic), filled in by _grant_all.
        self.delivery_topics: list[str] = []
        self._grant_all()
        self.log = project.root / "router.log"

    def _grant_all(self) -> None:
        """Every consumer granted every entry: requested and approved, as the grant store
        writes them (a grant record and its audit event per step), many per transaction."""
        total = len(self.entries) * len(self.consumers)
        print(f"  grants: {total:,}", flush=True)
        now = dt.datetime.now(dt.UTC)
        operator = Actor(department=self.uid, person="测试")
        writer = AuditWriter.connect(self.settings, f"grants.{self.uid}")
        pending: list[tuple[Happening, OutRecord]] = []
        for n, entry in enumerate(self.entries):
            loaded = self.catalog.entries[entry].entry
            for i, consumer in enumerate(self.consumers):
                request = GrantRequest.model_validate(
                    {
                        "consumer": consumer,
                        "entry": entry,
                        "purpose": "data_verification",
                        "legal_basis": "测试依据",
                        "valid_from": now - dt.timedelta(minutes=1),
                        "valid_until": now + dt.timedelta(days=1),
                        **GRANTS[(n + i) % len(GRANTS)][1],
                    }
                )
                grant = new_grant(f"g-{n:04d}-{i}", request, operator, now, origin="bench")
                approved = approve(grant, loaded, operator, now, (self.uid,))
                self.delivery_topics.append(delivery_topic(self.settings, approved.terms()))
                for kind, g in (("grant.requested", grant), ("grant.approved", approved)):
                    happening = Happening(
                        kind=kind,
                        actor=str(operator),
                        ts_ms=int(now.timestamp() * 1000),
                        details=grant_summary(g),
                        entry=entry,
                        consumer=consumer,
                        grant_id=g.id,
                    )
                    record = OutRecord(self.settings.topics.grants, g.id.encode(), g.encode())
                    pending.append((happening, record))
                if len(pending) >= GRANTS_PER_WRITE:
                    writer.write([h for h, _r in pending], [r for _h, r in pending])
                    pending = []
        if pending:
            writer.write([h for h, _r in pending], [r for _h, r in pending])
        writer.close()

    def source_records(self, rows: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
        """``(topic, key, value)``: row ``i`` for entry ``i`` modulo the entries."""
        out = []
        topics = [source_topic(self.settings.topics, e) for e in self.entries]
        for i, person in enumerate(rows):
            codec = self.codecs[i % len(self.codecs)]
            value = change_value(codec, person, self.uid, position=str(i))
            out.append((topics[i % len(topics)], person["citizen_id"], value))
        return out

    def delete_topics(self) -> None:
        """This side's source and delivery topics: the broker's open files are limited."""
        admin = AdminClient(self.settings.kafka.client_config())
        topics = [source_topic(self.settings.topics, e) for e in self.entries]
        topics += self.delivery_topics
        for start in range(0, len(topics), 500):
            for future in admin.delete_topics(
                topics[start : start + 500], operation_timeout=120
            ).values():
                try:
                    future.result()
                except KafkaException as exc:
                    # A run that failed early left some of them uncreated.
                    if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise

    @contextmanager
    def router(self) -> Iterator[subprocess.Popen[bytes]]:
        """One router worker, ready to route live: every delivery topic exists, it joined its
        group and every grant's backfill (of its empty partition) has handed over."""
        started = time.perf_counter()
        command = router_command(self.project.exchange_yaml, f"{self.uid}-bench")
        if self.heaptrack:
            # A native heap profile of the worker (``heaptrack_print`` reads it); the RSS
            # figures are then those of heaptrack's own process.
            command = ["heaptrack", "-o", str(self.work / "router.heaptrack"), *command]
        process = subprocess.Popen(
            command,
            # Its own process group: under heaptrack the worker is heaptrack's child, and the
            # group is what gets stopped.
            start_new_session=True,
            cwd=self.project.root,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            admin = Admin(self.settings.kafka)
            wanted = set(self.delivery_topics)

            def ready() -> bool:
                if not wanted <= set(admin.partition_counts()):
                    return False
                if admin.group_members(self.settings.router.group_id) != 1:
                    return False
                return router_backlog(self.settings, self.catalog).backfilling == 0

            self.wait_for("the router to be ready", ready, process, 1800)
            print(f"  router ready in {time.perf_counter() - started:.1f} s", flush=True)
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)

    def wait_for(
        self, what: str, check: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if process.poll() is not None:
                raise SystemExit(f"router exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(1)
        raise SystemExit(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")


def spread_rows(n: int, partitions: int) -> list[dict[str, Any]]:
    """``n`` rows; row ``i``'s key lands in partition ``i`` modulo ``partitions``.

    The producers' default partitioner (librdkafka's ``consistent_random``) puts a key in
    partition ``crc32(key) % partitions``; rows are picked so that the keys take the partitions
    in turn, as the many side's rows take its entries in turn.
    """
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for i in range(DISTINCT_KEYS):
        person = row(i)
        buckets[zlib.crc32(person["citizen_id"].encode()) % partitions].append(person)
    if not all(buckets):
        raise SystemExit(f"{DISTINCT_KEYS:,} keys do not cover {partitions:,} partitions")
    return [
        buckets[i % partitions][i // partitions % len(buckets[i % partitions])] for i in range(n)
    ]


def produce_all(settings: ExchangeSettings, records: list[tuple[str, str, bytes]]) -> None:
    """Sends the records; checks each landed where :func:`spread_rows` meant it to."""
    producer = Producer(settings.kafka.client_config(**{"linger.ms": 20, "acks": "all"}))
    misplaced: list[str] = []

    def landed(err: Any, msg: Any) -> None:
        if err is not None:
            misplaced.append(f"{msg.topic()} {msg.key()!r}: not delivered: {err}")
        elif msg.partition() != zlib.crc32(msg.key()) % partition_counts[msg.topic()]:
            misplaced.append(f"{msg.topic()}[{msg.partition()}] {msg.key()!r}")

    partition_counts = Admin(settings.kafka).partition_counts()
    for n, (topic, key, value) in enumerate(records, 1):
        produce(producer, topic, key.encode(), value, on_delivery=landed)
        if n % POLL_EVERY == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    if misplaced:
        raise SystemExit(f"source records not delivered where crc32 puts them: {misplaced[:5]}")


def memory_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def measure(side: Side, rows: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Source records/s routed (each to every consumer), and the router's RSS and peak, MB."""
    admin = Admin(side.settings.kafka)
    # A delivery topic has its entry's partitions (made by the router when it starts).
    tps = [(t, p) for t in side.delivery_topics for p in range(side.partitions)]
    total = len(rows) * len(side.consumers)
    source = side.source_records(rows)
    with side.router() as process:
        ready_rss, start_peak = memory_mb(process.pid)
        print(
            f"  router RSS when ready: {ready_rss:.0f} MB (peak so far {start_peak:.0f} MB)",
            flush=True,
        )
        produce_all(side.settings, source)
        first_at = None
        first_written = 0
        last_report = 0.0
        deadline = time.monotonic() + 1800
        while True:
            written = sum(admin.end_offsets(tps).values())
            now = time.perf_counter()
            if written > 0 and first_at is None:
                first_at, first_written = now, written
            if written >= total:
                break
            if now - last_report > 5:
                rss_now, peak_now = memory_mb(process.pid)
                print(
                    f"  ... {written:,} of {total:,}; RSS {rss_now:.0f} MB (peak {peak_now:.0f})",
                    flush=True,
                )
                last_report = now
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"router stopped or timed out:\n{side.log.read_text()[-3000:]}")
            # Reading 10,000 partitions' end offsets costs CPU the router would use: not often.
            time.sleep(1.0)
        assert first_at is not None
        rate = (written - first_written) / max(now - first_at, 1e-6) / len(side.consumers)
        rss, peak = memory_mb(process.pid)
    return rate, rss, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=10)
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--keep", action="store_true", help="keep the work folders (router logs)")
    parser.add_argument(
        "--only", choices=("baseline", "many"), help="measure one side (no ratio), e.g. its memory"
    )
    parser.add_argument(
        "--heaptrack",
        action="store_true",
        help="run the router under heaptrack (a native heap profile, kept with --keep)",
    )
    args = parser.parse_args()
    results = {}
    rows = spread_rows(args.records, args.entries)
    for name, entries, partitions in (
        ("baseline", 1, args.entries),
        ("many", args.entries, 1),
    ):
        if args.only not in (None, name):
            continue
        work = Path(tempfile.mkdtemp(prefix=f"exchange-bench-{name}-"))
        print(
            f"{name}: {entries:,} entries of {partitions:,} partition(s) x {args.consumers} "
            "consumers",
            flush=True,
        )
        side = Side(work, entries, args.consumers, partitions, args.heaptrack)
        try:
            results[name] = measure(side, rows)
        finally:
            side.delete_topics()
        if name == "baseline" and args.only is None:
            # The broker closes a deleted topic's files only when it removes them, 60 s later
            # (file.delete.delay.ms); both sides' partitions at once would pass the open-file
            # limit.
            print(f"  waiting {DELETE_WAIT_S} s for the broker to remove the topics", flush=True)
            time.sleep(DELETE_WAIT_S)
        rate, rss, peak = results[name]
        print(f"  {rate:,.0f} records/s; router RSS {rss:.0f} MB (peak {peak:.0f} MB)", flush=True)
        if args.keep:
            print(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.only is not None:
        return
    (b, b_rss, _bp), (m, m_rss, m_peak) = results["baseline"], results["many"]
    grants = args.entries * args.consumers
    print()
    print(
        "| records | grants | baseline (rec/s) | many (rec/s) | ratio | RSS 10 grants (MB) "
        "| RSS many (MB) | peak many (MB) | targets |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| {args.records:,} | {grants:,} | {b:,.0f} | {m:,.0f} | {m / b:.2f} | {b_rss:.0f} "
        f"| {m_rss:.0f} | {m_peak:.0f} | ratio >= 0.9, RSS <= 300 MB |"
    )


if __name__ == "__main__":
    main()
