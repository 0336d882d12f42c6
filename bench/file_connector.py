"""File connector throughput as a ratio to a bare confluent-kafka producer.

    .venv/bin/python -m bench.file_connector [--rows 100000] [--rounds 3]

Both sides publish the same records to a topic of the same shape, with the same producer
settings (idempotent, acks=all, lz4, linger 20 ms). The baseline sends records encoded
beforehand (the connector's own bytes, prepared outside the timing); the connector reads the
GBK CSV, converts, validates, encodes, publishes and saves its position. Rounds alternate and the
median of each side is compared. Needs the local platform (`exchange dev up`). Target: >= 0.5.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from connectors.config import load_connector_config
from connectors.encoding import FileBatch, encode_file_batch
from connectors.runner import Connector
from connectors.sources.tabular import read_rows, scan
from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.kafka.admin import Admin, TopicSpec, plan_topics
from exchange.runtime import freeze_startup_objects
from samples.generate import write_population_csv
from tests.conftest import ROOT, Project
from tests.integration.conftest import IsolatedProject
from tests.integration.connectors.conftest import POPULATION_FIELDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="publish.workers of the connector")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="exchange-bench-"))
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / "schemas", work / "schemas")
    project = IsolatedProject(Project(work))
    settings = project.settings()
    apply_catalog(load_catalog(settings).require_valid(), settings)
    source_file = work / "population.csv"
    print(f"writing {args.rows} rows (GBK CSV) ...", flush=True)
    write_population_csv(source_file, args.rows, encoding="gbk")

    inbox = work / "inbox"
    inbox.mkdir()
    config_file = work / "connector.yaml"
    import yaml

    config_file.write_text(
        yaml.safe_dump(
            {
                "id": f"{project.uid}-bench",
                "department": project.uid,
                "system": "bench",
                "entry": project.entry_id,
                "source": {"type": "file", "folder": str(inbox), "settle_s": 0, "mode": "snapshot"},
                "fields": POPULATION_FIELDS,
                "publish": {"workers": args.workers},
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    config = load_connector_config(config_file)
    connector = Connector(settings, config)
    records = _encoded(connector, source_file)
    baseline_topic = f"bench.baseline.{project.uid}"
    admin = Admin(settings.kafka)
    admin.apply(
        plan_topics([TopicSpec(baseline_topic, 2, 1, {})], admin.topic_states([baseline_topic]))
    )
    producer_conf = settings.kafka.client_config(
        **{"enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 20}
    )

    # As `exchange connector run` does once at start (exchange/runtime.py).
    freeze_startup_objects()
    baseline, ours = [], []
    for round_no in range(1, args.rounds + 1):
        baseline.append(_bare_producer(producer_conf, baseline_topic, records))
        shutil.copy(source_file, inbox / f"population-{round_no}.csv")
        started = time.perf_counter()
        Connector(settings, config).run(once=True)
        ours.append(args.rows / (time.perf_counter() - started))
        print(
            f"round {round_no}: bare producer {baseline[-1]:,.0f} rows/s, "
            f"connector {ours[-1]:,.0f} rows/s",
            flush=True,
        )

    b, o = statistics.median(baseline), statistics.median(ours)
    print()
    print("| rows | bare producer (rows/s) | file connector (rows/s) | ratio | target |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {args.rows:,} | {b:,.0f} | {o:,.0f} | {o / b:.2f} | >= 0.5 |")
    shutil.rmtree(work, ignore_errors=True)


def _encoded(connector: Connector, path: Path) -> list[tuple[bytes, bytes]]:
    """The records the connector would publish, encoded outside the timing."""
    rows = read_rows(
        path, scan(path, "auto"), connector.publisher.mapper.columns, delimiter=",", sheet=None
    )
    encoded = encode_file_batch(
        connector.publisher.encoder, FileBatch(path.name, "bench", "r", 0, list(rows))
    )
    assert not encoded.rejected and len(encoded.values) == len(encoded.keys)
    return [(key.encode(), value) for key, value in zip(encoded.keys, encoded.values, strict=True)]


def _bare_producer(conf: dict[str, Any], topic: str, records: list[tuple[bytes, bytes]]) -> float:
    producer = Producer(conf)
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    return len(records) / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
