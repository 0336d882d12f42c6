"""A connector killed with SIGKILL in the middle of a file loses nothing when restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from samples.generate import write_population_csv
from tests.integration.connectors.conftest import POPULATION_FIELDS, ConnectorEnv

EXCHANGE = Path(sys.executable).parent / "exchange"


def start(env: ConnectorEnv, connector_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(EXCHANGE),
            "--config",
            str(env.project.exchange_yaml),
            "connector",
            "run",
            str(connector_file),
            "--once",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigkill_mid_file_then_restart_repeats_only_the_unacknowledged_tail(
    env: ConnectorEnv,
) -> None:
    rows = write_population_csv(env.inbox / "big.csv", 100_000)
    connector_file = env.connector_file(
        {"type": "file", "folder": str(env.inbox), "settle_s": 0, "mode": "snapshot"},
        POPULATION_FIELDS,
    )
    process = start(env, connector_file)
    deadline = time.monotonic() + 120
    saved = None
    while time.monotonic() < deadline:
        saved = env.saved()
        if saved and saved["row"] > 10_000:
            break
        assert process.poll() is None, process.communicate()[0].decode()
        time.sleep(0.1)
    assert saved is not None, "the connector saved no position in time"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = env.saved()
    assert at_kill is not None and not at_kill["complete"], "killed after the end of the file"
    killed_after = at_kill["row"]
    published_before_restart = len(env.changes())
    assert published_before_restart >= killed_after - 1  # rows 2..killed_after were acknowledged

    restarted = start(env, connector_file)
    output = restarted.communicate(timeout=300)[0].decode()
    assert restarted.returncode == 0, output

    changes = env.changes()
    counts = Counter(c.key for c in changes)
    assert set(counts) == {r[0] for r in rows}, "a row is missing"
    repeated = {key for key, n in counts.items() if n > 1}
    assert all(n <= 2 for n in counts.values())
    by_key: dict[str, list[dict[str, object]]] = {}
    for c in changes:
        assert c.value is not None
        by_key.setdefault(c.key, []).append(c.value)
    for key in repeated:
        first, second = by_key[key]
        assert first["event_id"] == second["event_id"]
        row = int(str(first["source"]["position"]).split("#")[1])  # type: ignore[index]
        assert row > killed_after, f"row {row} was acknowledged and saved, yet repeated"
    assert len(changes) == 100_000 + len(repeated)
    assert (env.inbox / "done" / "big.csv").exists()
    final = env.saved()
    assert final is not None and final["complete"]
