"""Exactly once without the SDK's help: two router workers SIGKILLed five times during a stream,
and a plain ``read_committed`` confluent-kafka consumer of each delivery topic sees every entitled
event once; the audit receipts' counts and digests match what was delivered."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from exchange.audit.receipts import RECEIPT, receipt_rows
from exchange.audit.trail import read_trail
from exchange.routing.receipts import receipt_digest
from tests.integration.routing.conftest import (
    RouterEnv,
    change_value,
    person,
    plain_committed,
    router_command,
)

pytestmark = pytest.mark.integration
COUNT = 200_000
KILLS = 5
CHUNK = 5_000


def test_sigkilled_workers_deliver_every_event_exactly_once(router_env: RouterEnv) -> None:
    env = router_env
    everyone, county = env.consumers["mzj"], env.consumers["county"]
    env.grant(
        everyone,
        "x-all",
        fields=["citizen_id", "name", "region_code"],
        masks={"citizen_id": "none", "name": "none"},
    )
    env.grant(
        county,
        "x-county",
        fields=["citizen_id", "name"],
        row_filter={"region_code": {"in": ["140602"]}},
        masks={"citizen_id": "none", "name": "none"},
    )
    regions = ["140602" if i % 15_000 % 3 == 0 else "140603" for i in range(COUNT)]
    county_rows = [i for i, r in enumerate(regions) if r == "140602"]
    # Event ids as each grant delivers them (tokens of its own).
    grant_of = {everyone: "x-all", county: "x-county"}
    wanted = {
        everyone: set(env.tokens("x-all", "event", (f"x-{i}" for i in range(COUNT)))),
        county: set(env.tokens("x-county", "event", (f"x-{i}" for i in county_rows))),
    }
    workers = {w: _start(env, w) for w in ("x1", "x2")}
    published = threading.Event()
    publisher = threading.Thread(target=_publish, args=(env, regions, published))
    publisher.start()
    rng = random.Random(3)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(3, 6))
            victim = rng.choice(sorted(workers))
            workers[victim].kill()
            workers[victim].wait()
            workers[victim] = _start(env, victim)
        publisher.join()
        assert published.is_set()
        seen = _wait_for_all(env, wanted, workers)
    finally:
        for process in workers.values():
            process.terminate()
        for process in workers.values():
            process.wait(timeout=60)
    for consumer, events in wanted.items():
        counts = seen[consumer][0]
        assert set(counts) == events, f"{consumer}: missing or extra events"
        repeated = {e: n for e, n in counts.items() if n > 1}
        assert not repeated, f"{consumer}: {len(repeated)} event(s) delivered more than once"
    positions = env.source_positions()
    tokens = {c: env.tokens(g, "position", positions) for c, g in grant_of.items()}
    _receipts_match(env, seen, tokens)


def _start(env: RouterEnv, worker: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        router_command(env.project.exchange_yaml, f"{env.uid}-{worker}"),
        cwd=env.project.root,
        stdout=env.log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _publish(env: RouterEnv, regions: list[str], done: threading.Event) -> None:
    for start in range(0, COUNT, CHUNK):
        records = []
        for i in range(start, start + CHUNK):
            # person() counts birth dates from 1980 on: past ~16,000 they lie in the future
            # and fail the citizen ID rule, so people repeat (as updates) with new event ids,
            # each with a new name (an update that changes nothing a grant sees is not
            # delivered to it).
            row = {**person(i % 15_000, regions[i]), "name": f"张{i}"}
            records.append(
                (row["citizen_id"], change_value(env.codec, row, env.provider, "c", f"x-{i}"))
            )
        env.publish(records)
        time.sleep(0.2)
    done.set()


Seen = tuple[Counter[str], list[tuple[str, bytes | None, bytes | None]]]


def _read_committed(env: RouterEnv, topic: str) -> Seen:
    """Event ids counted, and ``(position token, key, value)`` of each record, as a plain
    read_committed consumer of ``topic`` sees them."""
    counts: Counter[str] = Counter()
    records = []
    for msg in plain_committed(env.settings, topic):
        if msg.value() is None:
            headers = dict(msg.headers() or [])
            event_id, position = headers["exchange.event_id"], headers["exchange.source"]
        else:
            value = env.lookup.decode(msg.value())
            event_id, position = value["event_id"].encode(), value["source_position"].encode()
        counts[event_id.decode()] += 1
        records.append((position.decode(), msg.key(), msg.value()))
    return counts, records


def _wait_for_all(
    env: RouterEnv, wanted: dict[str, set[str]], workers: dict[str, subprocess.Popen[bytes]]
) -> dict[str, Seen]:
    deadline = time.monotonic() + 600
    while True:
        for name, process in workers.items():
            assert process.poll() is None, f"worker {name} exited:\n{env.log.read_text()[-3000:]}"
        seen = {c: _read_committed(env, env.delivery_topic(c)) for c in wanted}
        if all(set(seen[c][0]) >= wanted[c] for c in wanted) or time.monotonic() > deadline:
            return seen
        time.sleep(5)


def _receipts_match(
    env: RouterEnv, seen: dict[str, Seen], positions: dict[str, dict[str, str]]
) -> None:
    """Each committed receipt row's count and digest equal the delivered records it covers.
    ``positions``: per consumer, its grant's position tokens -> source positions."""
    grant_of = {env.consumers["mzj"]: "x-all", env.consumers["county"]: "x-county"}
    rows: dict[str, list[Any]] = defaultdict(list)
    for read in read_trail(env.settings):
        event = read.event
        if event is not None and event.kind == RECEIPT:
            for row in receipt_rows(event):
                if row.grant_id in grant_of.values():
                    rows[row.grant_id].append(row)
    for consumer, (_counts, records) in seen.items():
        grant_rows = rows[grant_of[consumer]]
        assert sum(r.count for r in grant_rows) == len(records)
        by_partition: dict[int, list[tuple[int, bytes | None, bytes | None]]] = defaultdict(list)
        for token, key, value in records:
            _topic, partition, offset = positions[consumer][token].rsplit("/", 2)
            by_partition[int(partition)].append((int(offset), key, value))
        for delivered in by_partition.values():
            delivered.sort(key=lambda r: r[0])
        for row in grant_rows:
            covered = [
                (k, v)
                for o, k, v in by_partition[row.partition]
                if row.first_offset <= o <= row.last_offset
            ]
            assert len(covered) == row.count
            assert receipt_digest(covered) == row.sha256
