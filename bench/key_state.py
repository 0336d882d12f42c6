"""Per-key state at a city's scale: 2,000,000 keys in one entry, 10 grants (half row-filtered).

    .venv/bin/python -m bench.key_state [--keys 2000000]

One entry (4 partitions), one record per key, written before the clock starts. In one run:

- **throughput with the state ÷ without**: one router worker routes every record on the live
  path with ``router.key_state`` off (``EXCHANGE_ROUTER__KEY_STATE=false``), then a worker of
  another group routes the same records with it on. Each timed from the group's first commit
  to its last (every delivery committed). Target: >= 0.8.
- **the worker's peak RSS** with the state (``VmHWM``), after routing every key. Target:
  <= 500 MB.
- **the state on disk**: the bytes of the state's changelog partitions in the local broker's
  data folder (``exchange.router-state.<entry>``).
- **restore after a restart**: the worker stopped and started again; the seconds its log gives
  for reading each partition's state back, and from its start to every partition read back.
- **restore after a partition move**: a second worker joins; the seconds it took to read back
  the partitions it was given.

Needs the local platform (``exchange dev up``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.router import PARTITIONS, produce_all, setup, stop_workers
from exchange.config import ExchangeSettings, load_settings
from exchange.kafka.admin import Admin
from exchange.routing.report import router_backlog
from exchange.rules.checksums import make_citizen_id
from tests.conftest import ROOT
from tests.integration.routing.conftest import RouterEnv

REGIONS = ("140602", "140603", "140621", "140622")
#: Records encoded and written at a time (all 2,000,000 at once would hold ~1 GB here).
CHUNK = 200_000
#: 10 grants over 5 consumers; the odd ones keep one county's rows only.
CONSUMERS = ("mzj", "county", "ops", "fresh", "late")
#: ``EXCHANGE_BENCH_PROFILE=<dir>``: py-spy profiles of each routing run there (collapsed stacks).
PROFILE_DIR = os.environ.get("EXCHANGE_BENCH_PROFILE")
#: ``EXCHANGE_BENCH_SMAPS=<dir>``: each worker's memory map there once it routed every record.
SMAPS_DIR = os.environ.get("EXCHANGE_BENCH_SMAPS")
RESTORED = re.compile(
    r"per-key state of \S+\[(\d+)\]: ([\d,]+) keys from [\d,]+ changelog records in ([\d.]+) s"
)


def grant_all(env: RouterEnv) -> None:
    for i in range(10):
        terms: dict[str, Any] = {
            "fields": ["citizen_id", "name", "region_code", "birth_date"],
            "masks": {"citizen_id": "hash", "name": "none"},
        }
        if i % 2:
            terms["row_filter"] = {"region_code": {"prefix": REGIONS[i % 4]}}
        env.grant(env.consumers[CONSUMERS[i % 5]], f"state-{i}", **terms)


def row(i: int) -> dict[str, Any]:
    """Key ``i``: a valid citizen ID, distinct for every ``i`` below 14,000 x 999."""
    born = dt.date(1950, 1, 1) + dt.timedelta(days=i % 14_000)
    region = REGIONS[i % 4]
    return {
        "citizen_id": make_citizen_id(region, born, (i // 14_000) % 999),
        "name": f"张{i}",
        "gender": "1",
        "birth_date": born,
        "ethnicity": "汉族",
        "address": "朔州市某街道",
        "region_code": region,
        "phone": f"138{i:08d}",
    }


def produce_keys(env: RouterEnv, keys: int) -> None:
    """One record per key, written a chunk at a time (``bench.router.produce_all``)."""
    begun = time.monotonic()
    for first in range(0, keys, CHUNK):
        records = [env.change(row(i), "c") for i in range(first, min(first + CHUNK, keys))]
        produce_all(env.settings, env.project.source_topic, records)
        done = first + len(records)
        print(f"  ... {done:,} of {keys:,} written ({time.monotonic() - begun:.0f} s)", flush=True)


def start(env: RouterEnv, group: str, key_state: bool, name: str) -> subprocess.Popen[bytes]:
    os.environ["EXCHANGE_ROUTER__GROUP_ID"] = group
    os.environ["EXCHANGE_ROUTER__KEY_STATE"] = "true" if key_state else "false"
    env.start_router(name)
    assert env.process is not None
    return env.process


def committed(env: RouterEnv, group: str, ends: dict[tuple[str, int], int]) -> int:
    offsets = Admin(env.settings.kafka).committed_offsets(group)
    return sum(min(offsets.get(tp, 0), end) for tp, end in ends.items())


@dataclass(frozen=True)
class Run:
    """One worker routing every record: records/s, its peak RSS (bytes), and the CPU seconds
    the worker and the broker spent meanwhile (on 2 cores shared by both, CPU is the limit)."""

    rate: float
    rss: int
    worker_cpu_s: float
    broker_cpu_s: float

    def per_record_us(self, keys: int) -> str:
        w, b = self.worker_cpu_s / keys * 1e6, self.broker_cpu_s / keys * 1e6
        return f"CPU per record: worker {w:.1f} µs, broker {b:.1f} µs"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int:
    dev: ExchangeSettings = load_settings(ROOT / "config" / "exchange.yaml")
    return int((dev.resolve(dev.dev.state_dir) / "run" / "kafka.pid").read_text().split()[0])


def route_all(env: RouterEnv, group: str, key_state: bool, keys: int) -> Run:
    """One worker of ``group`` routing from offset 0 to the end (:class:`Run`). The worker
    keeps running (returned in ``env.process``)."""
    source = {(env.project.source_topic, p): 0 for p in range(PARTITIONS)}
    ends = Admin(env.settings.kafka).end_offsets(source)
    broker = broker_pid()
    broker_before = cpu_s(broker)
    process = start(env, group, key_state, f"{group}-w1")
    profiler = None
    if PROFILE_DIR:
        out = Path(PROFILE_DIR) / f"{'state' if key_state else 'plain'}.txt"
        profiler = subprocess.Popen(
            [
                *("py-spy", "record", "--native", "--format", "raw"),
                *("-r", "50", "-p", str(process.pid), "-o", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    first_at = None
    last_report = time.monotonic()
    while True:
        done = committed(env, group, ends)
        now = time.perf_counter()
        if first_at is None and done:
            first_at, first_done = now, done
        if done >= keys:
            assert first_at is not None
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
            rate = (done - first_done) / max(now - first_at, 1e-9)
            worker_cpu = cpu_s(process.pid)
            if SMAPS_DIR:
                smaps = Path(f"/proc/{process.pid}/smaps").read_text()
                (Path(SMAPS_DIR) / f"smaps-{group}.txt").write_text(smaps)
            return Run(rate, peak_rss(process.pid), worker_cpu, cpu_s(broker) - broker_before)
        if process.poll() is not None:
            raise SystemExit(f"the router exited:\n{env.log.read_text()[-3000:]}")
        if time.monotonic() - last_report > 10:
            print(f"  ... {done:,} of {keys:,} committed", flush=True)
            last_report = time.monotonic()
        time.sleep(0.05)


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    (kb,) = re.findall(r"VmHWM:\s+(\d+) kB", status)
    return int(kb) * 1024


def restored(log: Path, since: int) -> list[tuple[int, int, float]]:
    """``(partition, keys, seconds)`` of each state read back in the log after byte ``since``."""
    text = log.read_bytes()[since:].decode(errors="replace")
    return [(int(p), int(k.replace(",", "")), float(s)) for p, k, s in RESTORED.findall(text)]


def wait_restored(env: RouterEnv, since: int, partitions: int, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = restored(env.log, since)
        if len(found) >= partitions:
            return found
        time.sleep(0.2)
    raise SystemExit(f"no state read back in {timeout:.0f} s:\n{env.log.read_text()[-3000:]}")


def changelog_bytes(env: RouterEnv) -> int:
    """Bytes of the state's changelog segments (``*.log``) in the local broker's data folder;
    the index files beside them are preallocated (10 MiB each) and say nothing of the state."""
    dev: ExchangeSettings = load_settings(ROOT / "config" / "exchange.yaml")
    data = dev.resolve(dev.dev.state_dir) / "kafka" / "data"
    topic = env.settings.topics.router_state_of(env.project.entry_id)
    return sum(f.stat().st_size for d in data.glob(f"{topic}-*") for f in d.glob("*.log"))


def drop_topics(env: RouterEnv) -> None:
    """The run's topics (8 GB at 2,000,000 keys: sources, two routings' deliveries, the
    state's changelog), deleted so that runs do not fill the broker's disk."""
    admin = Admin(env.settings.kafka)
    admin.delete_topics(t for t in admin.partition_counts() if env.uid in t)


def measure(keys: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = setup(Path(tmp))
        try:
            grant_all(env)
            uid = env.uid
            # Join once on the empty source: every grant's topic made, every backfill handed over.
            warm = start(env, f"router-{uid}-warm", False, "warm")
            admin = Admin(env.settings.kafka)
            env.wait_for(
                "the grants' topics and hand-overs",
                lambda: (
                    router_backlog(env.settings, env.catalog).backfilling == 0
                    and len([t for t in admin.partition_counts() if t.startswith("dlv.")]) > 0
                ),
                300,
            )
            stop_workers(env, [warm])
            print(f"writing {keys:,} records, one per key", flush=True)
            produce_keys(env, keys)

            print("routing them without per-key state", flush=True)
            plain_run = route_all(env, f"router-{uid}-plain", False, keys)
            assert env.process is not None
            stop_workers(env, [env.process])
            plain, plain_rss = plain_run.rate, plain_run.rss
            print(f"  {plain:,.0f} records/s, peak RSS {plain_rss / 2**20:,.0f} MiB", flush=True)
            print(f"  {plain_run.per_record_us(keys)}", flush=True)

            print("routing them with per-key state", flush=True)
            group = f"router-{uid}-state"
            keyed_run = route_all(env, group, True, keys)
            assert env.process is not None
            keyed, keyed_rss = keyed_run.rate, keyed_run.rss
            print(f"  {keyed:,.0f} records/s, peak RSS {keyed_rss / 2**20:,.0f} MiB", flush=True)
            print(f"  {keyed_run.per_record_us(keys)}", flush=True)
            stop_workers(env, [env.process])
            on_disk = changelog_bytes(env)

            print("restarting the worker", flush=True)
            since = env.log.stat().st_size
            begun = time.monotonic()
            first = start(env, group, True, f"{group}-again")
            back = wait_restored(env, since, PARTITIONS, 1800)
            ready_s = time.monotonic() - begun
            restart_rss = peak_rss(first.pid)

            print("a second worker joins", flush=True)
            since = env.log.stat().st_size
            second = start(env, group, True, f"{group}-second")
            moved = wait_restored(env, since, 1, 600)
            time.sleep(5)  # the rest of the partitions it was given
            moved = restored(env.log, since)
            stop_workers(env, [first, second])
        finally:
            drop_topics(env)

    print()
    print(f"keys: {keys:,} in one entry, {PARTITIONS} partitions; 10 grants, 5 row-filtered")
    print(f"throughput without state: {plain:,.0f} records/s")
    print(f"throughput with state:    {keyed:,.0f} records/s")
    print(f"ratio with / without:     {keyed / plain:.2f} (target >= 0.8)")
    print(f"without state, {plain_run.per_record_us(keys)}")
    print(f"with state,    {keyed_run.per_record_us(keys)}")
    print(
        f"peak RSS with state:      {keyed_rss / 2**20:,.0f} MiB (target <= 500); "
        f"without: {plain_rss / 2**20:,.0f} MiB"
    )
    print(f"state's changelog on disk: {on_disk / 2**20:,.1f} MiB")
    total = sum(s for _p, _k, s in back)
    print(
        f"restore after a restart:  {total:.1f} s reading {sum(k for _p, k, _s in back):,} keys "
        f"back ({', '.join(f'[{p}] {s:.1f} s' for p, _k, s in back)}); start to read back "
        f"{ready_s:.1f} s; the worker's peak RSS after it {restart_rss / 2**20:,.0f} MiB"
    )
    print(
        "restore after a partition move: "
        + ", ".join(f"[{p}] {k:,} keys in {s:.1f} s" for p, k, s in moved)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=2_000_000)
    measure(parser.parse_args().keys)


if __name__ == "__main__":
    main()
