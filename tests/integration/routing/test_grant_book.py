"""A router whose copy of the grants stops following `exchange.grants` is noticed: `exchange
status` shows the worker's grant book as stale, and the router stops with the reason rather than
route under grants it can no longer see change (issue 21: a reader that ended went unnoticed,
and revocations silently stopped taking effect)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from typing import Any

from confluent_kafka.admin import AdminClient

from tests.integration.routing.conftest import EXCHANGE, ROWS, RouterEnv, router_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(env: RouterEnv, port: int) -> dict[str, Any]:
    result = subprocess.run(
        [str(EXCHANGE), "--config", str(env.project.exchange_yaml), "status", "--json"],
        cwd=env.project.root,
        env={**os.environ, "EXCHANGE_ROUTER__METRICS_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_a_grant_book_cut_off_from_the_grants_is_shown_stale_then_stops_the_router(
    router_env: RouterEnv,
) -> None:
    env = router_env
    env.grant(env.consumers["mzj"], "g-book", fields=["citizen_id", "region_code"])
    env.publish([env.change(r) for r in ROWS[:3]])
    port = free_port()
    command = router_command(env.project.exchange_yaml, f"{env.uid}-book")
    command[command.index("--metrics-port") + 1] = str(port)
    env.process = subprocess.Popen(
        command,
        cwd=env.project.root,
        env={**os.environ, "EXCHANGE_ROUTER__GRANT_BOOK_STALE_S": "25"},
        stdout=env.log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    env.wait_for("the first deliveries", lambda: len(env.deliveries(env.consumers["mzj"])) >= 3)

    def states() -> list[str]:
        return [r["state"] for r in status(env, port)["routers"]]

    assert states() == ["current"]
    admin = AdminClient(env.settings.kafka.client_config())
    for future in admin.delete_topics([env.settings.topics.grants]).values():
        future.result()
    env.wait_for("the status to show the book stale", lambda: states()[0].startswith("STALE"))

    process = env.process
    env.process = None  # its exit is what is waited for now
    assert process.wait(timeout=60) != 0
    log = env.log.read_text(encoding="utf-8")
    assert "GRANTS_STALE" in log
