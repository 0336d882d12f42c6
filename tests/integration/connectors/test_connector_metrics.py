"""A running connector's /metrics: rows read, published, rejected by reason, latency, polls."""

from __future__ import annotations

import shutil
import threading
import time
import urllib.request

from connectors.config import load_connector_config
from connectors.runner import Connector
from tests.conftest import ROOT
from tests.integration.connectors.conftest import POPULATION_FIELDS, ConnectorEnv


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_endpoint_counts_the_sample_file(env: ConnectorEnv) -> None:
    path = env.connector_file(
        {"type": "file", "folder": str(env.inbox), "settle_s": 0, "poll_interval_s": 0.2},
        POPULATION_FIELDS,
        metrics={"port": 0, "host": "127.0.0.1"},
    )
    connector = Connector(env.settings, load_connector_config(path))
    thread = threading.Thread(target=connector.run, daemon=True)
    thread.start()
    try:
        assert connector.running.wait(30)
        # Written under a hidden name, then renamed: with settle_s 0 a half-copied file would
        # be read at once (the sample is GBK, so a cut character sends it to failed/).
        shutil.copy(ROOT / "samples/data/gongan/population.csv", env.inbox / ".p.csv")
        (env.inbox / ".p.csv").rename(env.inbox / "p.csv")
        deadline = time.monotonic() + 30
        while not (env.inbox / "done" / "p.csv").exists():
            assert time.monotonic() < deadline, "file not processed"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{connector.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        connector.stop.set()
        thread.join(30)
    who = {"connector": f"{env.uid}-conn", "entry": env.project.entry_id}
    assert sample(text, "exchange_connector_rows_read_total", **who) == 40
    assert sample(text, "exchange_connector_records_published_total", op="u", **who) == 35
    assert sample(text, "exchange_connector_rows_rejected_total", reason="required", **who) == 1
    assert sample(text, "exchange_connector_rows_rejected_total", reason="pattern", **who) == 2
    assert sample(text, "exchange_connector_publish_latency_seconds_count", **who) == 35
    assert sample(text, "exchange_connector_last_successful_poll_timestamp_seconds", **who) > 0
    assert sample(text, "exchange_connector_checkpoint_lag_records", **who) >= 0
