"""A connector killed with SIGKILL in the middle of a file loses nothing when restarted, and
(exactly once, the default) repeats nothing either."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from samples.generate import write_population_csv
from tests.integration import crashing
from tests.integration.connectors.conftest import POPULATION_FIELDS, ConnectorEnv


def kill_mid_file(
    env: ConnectorEnv, connector_file: Path, after_row: int, pause_s: float = 0.0
) -> int:
    return crashing.kill_mid_file(
        env.project.exchange_yaml, connector_file, env.saved, after_row, pause_s
    )


def test_killed_three_times_mid_export_publishes_each_row_once(env: ConnectorEnv) -> None:
    rows = write_population_csv(env.inbox / "big.csv", 100_000)
    connector_file = env.connector_file(
        {"type": "file", "folder": str(env.inbox), "settle_s": 0, "mode": "snapshot"},
        POPULATION_FIELDS,
        publish={"checkpoint_interval_s": 0.2, "exactly_once": True},
    )
    saved_rows = [0]
    for _ in range(3):
        saved_rows.append(kill_mid_file(env, connector_file, saved_rows[-1], 0.1))
    crashing.run_to_the_end(env.project.exchange_yaml, connector_file)

    changes = env.changes()  # as the router reads them: committed
    counts = Counter(c.key for c in changes)
    assert set(counts) == {r[0] for r in rows}, "a row is missing"
    assert [k for k, n in counts.items() if n > 1] == [], "a row was published twice"
    assert len({c.value["event_id"] for c in changes if c.value is not None}) == 100_000
    # The kills did cut transactions short: their records are in the log, never committed.
    written = len(env.changes(committed=False))
    assert written > 100_000, f"{written} records written: no kill caught a transaction open"
    assert (env.inbox / "done" / "big.csv").exists()
    final = env.saved()
    assert final is not None and final["complete"]


def test_without_transactions_sigkill_repeats_only_what_followed_the_saved_position(
    env: ConnectorEnv,
) -> None:
    rows = write_population_csv(env.inbox / "big.csv", 100_000)
    connector_file = env.connector_file(
        {"type": "file", "folder": str(env.inbox), "settle_s": 0, "mode": "snapshot"},
        POPULATION_FIELDS,
        publish={"checkpoint_interval_s": 0.2, "exactly_once": False},
    )
    killed_after = kill_mid_file(env, connector_file, 10_000)
    published_before_restart = len(env.changes())
    assert published_before_restart >= killed_after - 1  # rows 2..killed_after were acknowledged

    crashing.run_to_the_end(env.project.exchange_yaml, connector_file)

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
