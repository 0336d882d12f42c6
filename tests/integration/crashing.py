"""Running a connector as its own process and killing it in the middle of a file (crash tests
of the connectors and of the exchange end to end)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXCHANGE = Path(sys.executable).parent / "exchange"
#: The connector's saved position as its offsets topic has it (committed), or None.
Saved = Callable[[], dict[str, Any] | None]


def start_connector(exchange_yaml: Path, connector_file: Path) -> subprocess.Popen[bytes]:
    """``exchange connector run FILE --once`` in a process of its own."""
    return subprocess.Popen(
        [
            *(str(EXCHANGE), "--config", str(exchange_yaml)),
            *("connector", "run", str(connector_file), "--once", "--log-level", "warning"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill_mid_file(
    exchange_yaml: Path, connector_file: Path, saved: Saved, after_row: int, pause_s: float = 0.0
) -> int:
    """Start the connector, SIGKILL it ``pause_s`` after it saved a position past
    ``after_row``; the saved row then (the file not yet complete)."""
    process = start_connector(exchange_yaml, connector_file)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        position = saved()
        if position and position["row"] > after_row:
            break
        assert process.poll() is None, process.communicate()[0].decode()
        time.sleep(0.05)
    else:
        raise AssertionError(f"no position past row {after_row} saved in time")
    time.sleep(pause_s)  # into the next transaction (a position is saved every 0.2 s)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = saved()
    assert at_kill is not None and not at_kill["complete"], "killed after the end of the file"
    return int(at_kill["row"])


def run_to_the_end(exchange_yaml: Path, connector_file: Path) -> None:
    process = start_connector(exchange_yaml, connector_file)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output
