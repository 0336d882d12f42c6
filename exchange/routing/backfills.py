"""Backfill runs: a newly active grant's consumer gets the entry's current state, then the live
stream takes over (:mod:`exchange.routing.backfill` decides who delivers what).

Each run reads one source partition with a reader of its own (in an executor thread), routes a
chunk at a time through the same batch path as the live stream and hands it to the worker, which
stages it into the open checkpoint: a chunk's deliveries, receipts and the run's progress are
committed together with the live stream's. When a checkpoint fails, the worker starts over from
the committed progress with a new :class:`~exchange.routing.backfill.Handover`; a run of the old
one sees it and ends without staging anything more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from confluent_kafka import TopicPartition

from exchange.audit.events import Happening
from exchange.config import ExchangeSettings
from exchange.kafka.control import reader
from exchange.kafka.source import read_chunk
from exchange.routing import metrics
from exchange.routing.backfill import Backfill, Handover, Progress
from exchange.routing.batch import Routed, route_backfill
from exchange.routing.core import Router
from exchange.routing.kernel import Kernels
from exchange.routing.state import KeyState

__all__ = ["BackfillRunner"]

log = logging.getLogger(__name__)
#: How often a backfill looks whether its partition's per-key state is ready.
STATE_WAIT_S = 0.1
#: Stages a chunk unless its handover is gone or the check says the run was stopped meanwhile;
#: ``False`` when it was not staged.
Stage = Callable[[Routed, Handover, Callable[[], bool]], Awaitable[bool]]


class BackfillRunner:
    """Starts and runs the backfills a worker's handover plans."""

    def __init__(
        self,
        settings: ExchangeSettings,
        core: Router,
        kernels: Kernels,
        actor: str,
        stage: Stage,
        refresh: Callable[[], Awaitable[None]],
        resolve: Callable[[str, list[Any]], Awaitable[None]],
        state: Callable[[str, int], tuple[KeyState | None, int | None] | None] = (
            lambda t, p: (None, None)
        ),
        routing: asyncio.Lock | None = None,
        current: Callable[[Handover], bool] = lambda h: True,
    ) -> None:
        """``resolve``: fetches a chunk's writer schemas before it is routed (the worker's
        ``resolve_schemas``); ``refresh``: brings the grants up to date; ``state``: a
        partition's per-key state and the offset its committed rows routed up to (the live
        stream's, shared: see :func:`~exchange.routing.batch.route_backfill`); ``routing``:
        held while a chunk is routed and staged, so no live batch routes between (both change
        the same state, each reading through the other's pending changes)."""
        self.settings = settings
        self._state = state
        self._routing = routing or asyncio.Lock()
        #: Whether a handover is still the worker's (a rewind replaces it).
        self._current = current
        self.core = core
        self.kernels = kernels
        self.actor = actor
        self._stage = stage
        self._refresh = refresh
        self._resolve = resolve
        self._slots = asyncio.Semaphore(settings.router.backfill_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Called with what failed when a run fails on an error it cannot get past.
        self.on_failure: Callable[[str, BaseException], None] = lambda what, exc: None

    def start(self, handover: Handover, partitions: Iterable[tuple[str, int]]) -> None:
        """A run for each active grant that has none and is not handed over yet."""
        for topic, partition in partitions:
            route = self.core.routes.get(topic)
            if route is None or not route.grants:
                continue
            for backfill in handover.plan(topic, partition, route.grants):
                log.info(
                    "backfilling %s[%d] from offset %d for grant(s) %s",
                    topic,
                    partition,
                    backfill.next_offset,
                    ", ".join(sorted(backfill.grants)),
                )
                task = asyncio.ensure_future(self._guarded(handover, backfill))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _guarded(self, handover: Handover, backfill: Backfill) -> None:
        try:
            async with self._slots:
                metrics.BACKFILLS.inc()
                try:
                    await self._run(handover, backfill)
                finally:
                    metrics.BACKFILLS.dec()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_failure(f"backfilling {backfill.topic}[{backfill.partition}]", exc)

    async def _run(self, handover: Handover, backfill: Backfill) -> None:
        """Read from ``next_offset``, stage chunk by chunk, hand over at the end. The reader is
        only touched from the executor thread that reads, and closed after the last read."""
        loop = asyncio.get_running_loop()
        consumer = reader(self.settings.kafka, committed=True)
        consumer.assign([TopicPartition(backfill.topic, backfill.partition, backfill.next_offset)])
        try:
            while not backfill.stopped or backfill.handed_over:
                # Taken over by the live stream: nothing more to read, only the hand-over to save.
                chunk, at_end = (
                    ([], True)
                    if backfill.handed_over
                    else await loop.run_in_executor(
                        None, read_chunk, consumer, self.settings.router.batch_size
                    )
                )
                # The end event comes once per arrival there: an empty read after it, with
                # nothing read since, is still at the end.
                if at_end:
                    backfill.end_at = chunk[-1].offset() + 1 if chunk else backfill.next_offset
                elif not chunk and backfill.end_at == backfill.next_offset:
                    at_end = True
                if backfill.stopped and not backfill.handed_over:
                    return
                # A grant may have been revoked or expired during the read.
                await self._refresh()
                if chunk:
                    await self._resolve(backfill.topic, chunk)
                # The partition's state read back and settled (it routes with it).
                while self._state(backfill.topic, backfill.partition) is None:
                    if backfill.stopped and not backfill.handed_over:
                        return
                    await asyncio.sleep(STATE_WAIT_S)
                async with self._routing:
                    # Routing changes the partition's state: a run of a replaced handover, or
                    # one stopped meanwhile, must not (its changes would stay pending unstaged
                    # and be committed with the next transaction, holdings nobody delivered).
                    if not self._current(handover) or (
                        backfill.stopped and not backfill.handed_over
                    ):
                        return
                    routed = self._route(handover, backfill, chunk, at_end)
                    if routed is None:
                        continue
                    # Stopped while waiting to stage (its partition given up, a rewind): not
                    # ours. Handed over meanwhile is fine: the live stream starts after it.
                    still_ours = lambda: not backfill.stopped or backfill.handed_over  # noqa: E731
                    if not await self._stage(routed, handover, still_ours):
                        return
                if routed.happenings:
                    log.info(
                        "backfill of %s[%d] handed over at offset %d",
                        backfill.topic,
                        backfill.partition,
                        backfill.next_offset,
                    )
                    return
        finally:
            consumer.close()

    def _route(
        self, handover: Handover, backfill: Backfill, chunk: list[Any], at_end: bool
    ) -> Routed | None:
        """The chunk's deliveries and the run's progress; ``None`` when there is nothing to save."""
        route = self.core.routes[backfill.topic]
        handover.keep(backfill, route.grants)
        routed = Routed(backfill=True)
        # Stopped meanwhile (e.g. the live stream took over): the chunk is not ours.
        if not backfill.stopped and chunk:
            routed = route_backfill(
                self.core,
                self.kernels,
                backfill.topic,
                chunk,
                backfill.grants,
                self.actor,
                self.settings.topics.dlq,
                *(self._state(backfill.topic, backfill.partition) or (None, None)),
            )
            backfill.next_offset = chunk[-1].offset() + 1
        done = handover.finish(backfill, at_end)
        if not (chunk or done):
            return None
        routed.progress = handover.progress(backfill, done)
        if done:
            now_ms = int(time.time() * 1000)
            routed.happenings = [
                _backfilled_event(self.actor, now_ms, route.entry.id, p) for p in routed.progress
            ]
        return routed


def _backfilled_event(actor: str, ts_ms: int, entry: str, progress: Progress) -> Happening:
    return Happening(
        kind="delivery.backfilled",
        actor=actor,
        ts_ms=ts_ms,
        entry=entry,
        grant_id=progress.grant_id.split("@", 1)[0],
        details={
            "generation": progress.grant_id.partition("@")[2],
            "source_topic": progress.topic,
            "partition": progress.partition,
            "handover_offset": progress.next_offset,
        },
    )
