"""The faust-streaming app: it only moves records between Kafka and :class:`RouterService`.

Offsets: faust acks a batch from ``take_events`` only after the loop body returned, and commits
acked offsets after flushing. The body returns only when every delivery and audit event of the
batch is acknowledged. An exception inside the body would still be acked by faust (its ack sits
in a ``finally``), so any failure ends the process at once with ``os._exit``: the batch is then
not committed and is routed again after the restart.

Faust cannot subscribe by pattern (its aiokafka driver ignores patterns), so the router
subscribes to the source topics the catalog names at start and restarts itself when they change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust

from exchange.config import ExchangeSettings
from exchange.config.settings import KafkaSecurity
from exchange.routing.core import SourceRecord
from exchange.routing.service import RouterService

log = logging.getLogger(__name__)
#: Exit status when the router stops on an error; a supervisor restarts it.
EXIT_FAILED = 70
#: How often the router looks for catalog changes (new source topics), in seconds.
CATALOG_CHECK_S = 10.0
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def broker_urls(bootstrap_servers: str) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap_servers.split(",") if h.strip())


def broker_credentials(security: KafkaSecurity) -> faust.SASLCredentials | None:
    """faust's (aiokafka's) form of the same credentials the confluent-kafka clients use."""
    if security.protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(
        cafile=str(security.ca_file) if security.ca_file is not None else None
    )
    return faust.SASLCredentials(
        username=security.username,
        password=security.password,
        ssl_context=context,
        mechanism=security.mechanism,
    )


def build_app(
    settings: ExchangeSettings,
    service: RouterService,
    datadir: Path,
    on_catalog_change: Callable[[], None],
) -> faust.App:
    rs = settings.router
    app = faust.App(
        rs.group_id,
        broker=broker_urls(settings.kafka.bootstrap_servers),
        broker_credentials=broker_credentials(settings.kafka.security),
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        # No tables: aiokafka's round-robin assignor spreads many topics over the workers.
        table_standby_replicas=0,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=rs.session_timeout_s,
        broker_heartbeat_interval=rs.session_timeout_s / 3,
        producer_acks=-1,
        stream_wait_empty=True,
    )
    topics = service.source_topics()
    source = app.topic(*topics, allow_empty=True, **RAW)

    @app.agent(source, concurrency=1)
    async def route(stream: Any) -> None:
        async for events in stream.take_events(rs.batch_size, within=rs.batch_wait_s):
            records = [_record(e.message) for e in events]
            try:
                await service.handle(records)
            except BaseException:
                _die(f"routing a batch of {len(records)} records failed")

    # Backfills run on the partitions this worker routes: the hand-over needs the live stream.
    async def assigned(_app: Any, assigned: set[Any], **_: Any) -> None:
        service.partitions_assigned((tp.topic, tp.partition) for tp in assigned)

    async def revoked(_app: Any, revoked: set[Any], **_: Any) -> None:
        service.partitions_revoked((tp.topic, tp.partition) for tp in revoked)

    app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]
    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]

    service.on_failure = _die

    # faust's decorators are untyped.
    @app.timer(rs.grant_check_interval_s)  # type: ignore[untyped-decorator]
    async def grants() -> None:
        # Revocation and expiry take effect here even when no record arrives.
        try:
            await service.refresh_grants(asyncio.get_running_loop())
        except BaseException:
            _die("refreshing grants failed")

    @app.timer(CATALOG_CHECK_S)  # type: ignore[untyped-decorator]
    async def catalog() -> None:
        try:
            changed = await asyncio.get_running_loop().run_in_executor(
                None, service.catalog_changed
            )
        except Exception:
            log.exception("cannot read the catalog; trying again in %.0f s", CATALOG_CHECK_S)
            return
        if changed:
            log.warning("the catalog changed (source topics differ): restarting to subscribe")
            on_catalog_change()

    return app


def _record(message: Any) -> SourceRecord:
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )


def _die(what: str) -> None:
    log.critical("%s; exiting so the batch is routed again after a restart", what, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_FAILED)


def restart_process() -> None:
    """Re-execute this process with the same arguments (the new catalog is read at start)."""
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.argv])
