"""What the quality worker costs the router: router throughput with the worker measuring the
same source topic at the same time, against the router alone, in the same run.

    .venv/bin/python -m bench.quality [--records 200000] [--rounds 6]

Each round routes ``--records`` records of one entry (4 partitions, 3 grants, audit on:
``bench.router``'s setup) twice, each time on a fresh entry, in alternating order (ABBA, so the
machine's drift cancels): alone, and with ``exchange quality run`` (default settings: nice 19,
giving way to a busy router) started beforehand on the same exchange. The worker is frozen
(SIGSTOP) while the records are written, outside the timing, and let go as the router starts,
so both face the whole backlog at once: the worst case for the router. Timing is
``bench.router``'s (first delivery to every source offset committed). The worker must then read
every record (its measures are late, not lost).

The router alone varies by a third between runs on the 2-core machine (60,000-100,000
records/s), so take the median of 6 rounds or more.

Target (issue 23): the router's throughput with the worker >= 0.95 of without it (median of
the rounds' ratios). Needs the local platform (``exchange dev up``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.router import route, setup, source_records
from exchange.kafka.control import read_table
from tests.integration.routing.conftest import EXCHANGE, RouterEnv


def start_quality(env: RouterEnv) -> subprocess.Popen[bytes]:
    with env.project.exchange_yaml.open("a", encoding="utf-8") as f:
        f.write("quality:\n  interval_s: 2\n  metrics_port: 0\n")
    log = (env.project.root / "quality.log").open("ab")
    return subprocess.Popen(
        [str(EXCHANGE), "--config", str(env.project.exchange_yaml), "quality", "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def measured(env: RouterEnv) -> int:
    """Records of the entry the worker has read, as its published measures say."""
    raw = read_table(env.settings.kafka, env.settings.topics.quality_measures).get(
        env.project.entry_id
    )
    return -1 if raw is None else int(json.loads(raw)["records"])


def with_worker(records: int) -> tuple[float, float]:
    """The router's rate with the worker, and how long the worker took to read the records."""
    work = Path(tempfile.mkdtemp(prefix="exchange-bench-quality-"))
    env = setup(work)
    worker = start_quality(env)
    try:
        env.wait_for("the quality worker's first measures", lambda: measured(env) == 0, 120)
        worker.send_signal(signal.SIGSTOP)
        resumed: list[float] = []

        def let_go() -> None:
            resumed.append(time.perf_counter())
            worker.send_signal(signal.SIGCONT)

        rate = route(env, source_records(env, records), workers=1, on_start=let_go)
        env.wait_for("the worker to read every record", lambda: measured(env) >= records, 300)
        return rate, time.perf_counter() - resumed[0]
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.terminate()
        worker.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def alone(records: int) -> float:
    work = Path(tempfile.mkdtemp(prefix="exchange-bench-quality-"))
    env = setup(work)
    try:
        return route(env, source_records(env, records), workers=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    ratios, base, ours = [], [], []
    for round_no in range(1, args.rounds + 1):
        pair: dict[str, float] = {}
        for mode in ("alone", "with") if round_no % 2 else ("with", "alone"):
            print(f"round {round_no}: the router {mode}", flush=True)
            if mode == "alone":
                pair[mode] = alone(args.records)
                print(f"  {pair[mode]:,.0f} records/s", flush=True)
            else:
                pair[mode], read_s = with_worker(args.records)
                print(
                    f"  {pair[mode]:,.0f} records/s; the worker read them all {read_s:.1f} s "
                    "after the router started",
                    flush=True,
                )
        base.append(pair["alone"])
        ours.append(pair["with"])
        ratios.append(pair["with"] / pair["alone"])
        print(f"  ratio {ratios[-1]:.3f}", flush=True)
    b, o = statistics.median(base), statistics.median(ours)
    print()
    print(
        "| records | rounds | router alone (rec/s) | with the quality worker (rec/s) "
        "| median of the rounds' ratios | ratio of the medians |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.records:,} | {args.rounds} | {b:,.0f} | {o:,.0f} "
        f"| {statistics.median(ratios):.3f} (>= 0.95) | {o / b:.3f} |"
    )
    print("per round: " + ", ".join(f"{r:.3f}" for r in ratios))


if __name__ == "__main__":
    main()
