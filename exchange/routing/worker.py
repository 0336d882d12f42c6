"""One router worker: source batches in, checkpointed deliveries out; a faust (mode) service.

The parts, each a class of its own:

- :class:`~exchange.kafka.source.SourceFeed` reads the source topics in a thread;
- :class:`~exchange.routing.grants.GrantTable` follows grants and the catalog;
- :func:`~exchange.routing.batch.route_live` routes a batch (no I/O);
- :class:`~exchange.routing.checkpoint.Checkpointer` stages routed batches into the open Kafka
  transaction and commits them with the source offsets;
- :class:`~exchange.routing.backfills.BackfillRunner` runs backfills of new grants;

and this class wires them: the live loop, when to checkpoint, what to do when a checkpoint
fails, and the consumer group's partition moves.

Faults are ridden out, not exited on. A checkpoint that fails retriably (the broker is away) is
retried with a growing pause for as long as it takes; one that must be aborted (a delivery timed
out, the transaction expired, the group moved on) is aborted, and everything since the last
commit is routed again from the committed offsets and backfill progress kept in memory; a lost
producer (fatal, fenced) is opened anew and the committed state re-read from Kafka. The worker
exits only when that re-opening fails on something retrying cannot mend (an authorisation or
configuration error), and says why.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import KafkaException, TopicPartition
from mode import Service

from exchange.audit.writer import AuditWriter
from exchange.config import ExchangeSettings
from exchange.config.settings import RouterSettings
from exchange.errors import ExchangeError
from exchange.grants.book import GrantBook
from exchange.kafka.changelog import (
    ChangelogRecords,
    ensure_changelogs,
    read_changelog,
    split_settled,
)
from exchange.kafka.control import last_record_below, read_table
from exchange.kafka.errors import KafkaOpError, RegistryError
from exchange.kafka.registry import Registry
from exchange.kafka.source import SourceBatch, SourceFeed
from exchange.kafka.transactions import TransactionError
from exchange.kafka.wire import SchemaLookup
from exchange.routing import metrics
from exchange.routing.backfill import Handover, Progress, ProgressError
from exchange.routing.backfills import BackfillRunner
from exchange.routing.batch import Routed, Run, finish_live, plan_live, run_kernels
from exchange.routing.checkpoint import Checkpointer, CheckpointPolicy
from exchange.routing.core import DELIVERY_FRAMING_BYTES, Router
from exchange.routing.grants import GrantTable
from exchange.routing.kernel import Kernels, partition_runs
from exchange.routing.reaper import Reaper
from exchange.routing.rebuild import Rebuild, Rebuilds, plan_rebuild
from exchange.routing.salts import GrantSalts
from exchange.routing.state import KeyState
from exchange.runtime import release_free_memory

__all__ = [
    "RouterError",
    "RouterWorker",
    "book_staleness",
    "past_markers",
    "producer_overrides",
    "read_progress",
    "read_progress_patiently",
    "read_state",
]

T = TypeVar("T")
log = logging.getLogger(__name__)
TP = tuple[str, int]
#: Longest pause between two tries of a failing checkpoint or re-opening.
MAX_BACKOFF_S = 30.0
#: Live batches routed and not staged yet, at most (then the loop stages before routing on).
ROUTED_AHEAD = 8
#: Refusals of a transaction call while the coordinator completes the previous commit: tried
#: again after BUSY_PAUSE_S, 2 x BUSY_PAUSE_S, ... (BUSY_RETRIES times), then backed off.
COORDINATOR_BUSY = frozenset({"CONCURRENT_TRANSACTIONS", "COORDINATOR_LOAD_IN_PROGRESS"})
BUSY_PAUSE_S = 0.01
BUSY_RETRIES = 10
#: Longest wait for the backfill progress to be readable at start-up, in seconds.
PROGRESS_WAIT_S = 120.0
#: How often the worker gives memory freed while routing back to the system, in seconds.
TRIM_INTERVAL_S = 5.0
#: How often the worker looks for catalog changes (new source topics), in seconds.
CATALOG_CHECK_S = 10.0
#: How often a worker looks for delivery topics of ended grant generations.
REAP_INTERVAL_S = 2.0


class RouterError(ExchangeError):
    """The router cannot go on; the message says why."""


def producer_overrides(rs: RouterSettings) -> dict[str, Any]:
    """The router's librdkafka producer settings on top of the audit writer's defaults.

    ``retry.backoff.ms`` 10 (librdkafka's default is 100): a transaction begun right after a
    commit can meet the coordinator still writing that commit's markers, which answers
    ``AddOffsetsToTxn`` with ``CONCURRENT_TRANSACTIONS``; librdkafka tries again after this
    backoff, and 100 ms held the checkpoint (and every record in it) 92 ms at a time. With 10,
    latency p99 at 2,000 records/s 51-52 ms against 51-66 ms (docs/benchmarks.md)."""
    return {
        "queue.buffering.max.messages": rs.in_flight_deliveries,
        "linger.ms": rs.linger_ms,
        "retry.backoff.ms": 10,
        # The router refuses larger deliveries itself (with a dead letter); librdkafka's own
        # refusal would fail the checkpoint.
        "message.max.bytes": rs.max_delivery_bytes + DELIVERY_FRAMING_BYTES,
    }


class RouterWorker(Service):
    """A router worker (see the module docstring)."""

    def __init__(self, settings: ExchangeSettings, worker_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.worker_id = worker_id
        self.actor = f"router.{worker_id}"
        rs = settings.router
        registry = Registry(settings.registry)
        # With subjects: a record framed with another subject's schema id is refused.
        lookup = SchemaLookup(registry.schema_by_id, registry.subjects_of)
        self.core = Router(lookup, rs.max_delivery_bytes)
        self.kernels = Kernels(lookup, rs.max_delivery_bytes)
        salts, made = GrantSalts.load(settings)
        path = settings.resolve(rs.salt_secret_file)
        if made:
            log.warning(
                "made the grants' salt secret %s (fingerprint %s): give every router worker "
                "this same file, and nobody else",
                path,
                salts.fingerprint,
            )
        else:
            log.info("grants' salt secret %s, fingerprint %s", path, salts.fingerprint)
        self.grants = GrantTable(settings, self.core, self.actor, salts)
        self.reaper = Reaper(settings, self.grants.admin)
        self.feed = SourceFeed(
            settings.kafka.client_config(
                **{
                    "group.id": rs.group_id,
                    # A worker silent this long leaves the group; its partitions move on.
                    "session.timeout.ms": int(rs.session_timeout_s * 1000),
                    "heartbeat.interval.ms": int(rs.session_timeout_s * 1000 / 3),
                    # Names the worker in the group's description (`exchange status`).
                    "client.id": f"{settings.kafka.client_id}.{self.actor}",
                }
            ),
            f"^{settings.topics.source_prefix.replace('.', '[.]')}.*",
            self,
            rs.batch_size,
            rs.batch_wait_s,
        )
        #: Routing keeps per-key state (``router.key_state``): one per source partition owned.
        self.keyed = rs.key_state
        self.states: dict[TP, KeyState] = {}
        #: Per source partition with a state: the offset its committed rows routed up to.
        #: Set after the rows are (committed state first: a backfill reads this, then rows).
        self.settled: dict[TP, int] = {}
        #: Partitions whose state the live stream rebuilds from their log start (``rebuild.py``).
        self.rebuilds = Rebuilds()

        self.handover = Handover()
        #: Held from planning a live batch to keeping its routing, and while a backfill chunk
        #: is routed and staged (taken before the gate): both change the per-key state, so
        #: each routes on the other's changes and they are staged in the state's order.
        self._routing = asyncio.Lock()
        self.backfills = BackfillRunner(
            settings,
            self.core,
            self.kernels,
            self.actor,
            self._stage_backfill,
            self.refresh_grants,
            self.resolve_schemas,
            self._current,
            self._routing,
            lambda handover: handover is self.handover,
        )
        self.backfills.on_failure = self._cannot_go_on
        self.policy = CheckpointPolicy(
            rs.checkpoint_min_s, rs.checkpoint_max_s, rs.checkpoint_max_deliveries
        )
        self._checkpoints: Checkpointer | None = None
        #: Staging and committing exclude each other: a commit seals what was staged.
        self._gate = asyncio.Lock()
        self._grant_lock = asyncio.Lock()
        self._commit: asyncio.Future[None] | None = None
        #: Live batches routed and not staged yet, with their feed epoch.
        self._routed: list[tuple[Routed, int]] = []
        #: The compiled kernel's own thread (it releases the GIL while it routes).
        self._kernel_thread = ThreadPoolExecutor(1, thread_name_prefix="kernel")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failures = 0
        #: A checkpoint's blocking calls each time out after the request timeout; one that has
        #: not returned after both did, and then some, is stuck.
        self._stall_s = settings.kafka.request_timeout_s * 2 + 10
        self._crashing: asyncio.Future[None] | None = None
        self._catalog_check: asyncio.Future[None] | None = None
        self._catalog_checked = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Blocking start-up before the event loop runs: grants, catalog, audit chain, and the
        grants active now prepared (so the first batch routes at once)."""
        self.grants.book.start(self.settings.kafka.request_timeout_s * 4)
        self.grants.load_catalog()
        # The checkpointer first: opening it fences this worker's previous self, whose
        # transaction (open when it was killed) holds back committed reads of the progress.
        self._checkpoints = self._new_checkpointer()
        self.handover = Handover(read_progress_patiently(self.settings))
        now = _now()
        happenings = self.grants.apply(self.grants.prepare(now), now)
        self.checkpoints.carry(happenings)

    def _new_checkpointer(self) -> Checkpointer:
        # The chain's transactional producer carries the deliveries too: one transaction.
        return Checkpointer(
            AuditWriter.connect(
                self.settings,
                self.actor,
                native=self.settings.kafka.native_produce,
                producer=producer_overrides(self.settings.router),
            ),
            self.actor,
            self.feed.group_metadata,
            self.settings.topics.router_backfills,
            self.policy,
            self._changelog_of if self.keyed else None,
        )

    def _changelog_of(self, source_topic: str) -> str:
        return self.settings.topics.router_state_of(self.core.routes[source_topic].entry.id)

    @property
    def checkpoints(self) -> Checkpointer:
        if self._checkpoints is None:
            raise RouterError("the router worker was not prepared", code="NOT_STARTED")
        return self._checkpoints

    def source_topics(self) -> list[str]:
        return sorted(self.core.routes)

    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.feed.start(self._loop)

    async def on_stop(self) -> None:
        loop = asyncio.get_running_loop()
        await self.backfills.stop()
        # Leaving the group revokes every partition: `revoked` checkpoints what was routed.
        await loop.run_in_executor(None, self.feed.stop)
        await self._await_commit()
        if self._checkpoints is not None:
            await self._stage_routed()
            if not self.checkpoints.pending.empty():
                await self._checkpoint()
        await loop.run_in_executor(None, self._close)
        self._kernel_thread.shutdown(wait=False)

    def _close(self) -> None:
        self.grants.book.stop()
        if self._checkpoints is not None:
            self.checkpoints.close()

    # -- the live stream ---------------------------------------------------------------------

    @Service.task
    async def _live(self) -> None:
        try:
            while not self.should_stop:
                batch = await self._next_batch()
                if batch is not None:
                    await self._handle(batch)
                    continue
                if self._routed:
                    await self._stage_routed()
                if self.checkpoints.due(backlog=False):
                    self._start_checkpoint()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.critical("the router stops: %s", exc, exc_info=True)
            await self.crash(exc)

    async def _next_batch(self) -> SourceBatch | None:
        # Something waits to be committed: look again as soon as a checkpoint may be due.
        waiting = self._routed or not self.checkpoints.pending.empty()
        timeout = self.policy.min_interval_s if waiting else 0.05
        try:
            batch = await asyncio.wait_for(self.feed.batches.get(), timeout=max(timeout, 0.001))
        except TimeoutError:
            return None
        if batch.epoch == -1:
            raise RouterError(
                f"the source consumer failed: {self.feed.failure}", code="SOURCE_FAILED"
            )
        if batch.epoch != self.feed.epoch:
            self.feed.done(batch)  # read before a rewind: read again
            return None
        return batch

    async def _handle(self, batch: SourceBatch) -> None:
        async with self._routing:
            routed, begun, started, routed_at = await self._route_batch(batch)
            self._routed.append((routed, batch.epoch))
        metrics.BATCH_RECORDS.observe(routed.records)
        metrics.BATCH_PHASE.labels("grants").observe(started - begun)
        metrics.BATCH_PHASE.labels("route").observe(routed_at - started)
        if self._may_route_ahead() and (self._gate.locked() or not self.feed.batches.empty()):
            # Staged with the next batch (while the kernel routes that one), or after the
            # checkpoint that is committing: either way this thread goes on routing.
            return
        routed_at = time.perf_counter()
        await self._stage_routed()
        metrics.BATCH_PHASE.labels("stage").observe(time.perf_counter() - routed_at)
        if self.checkpoints.due(backlog=not self.feed.batches.empty()):
            self._start_checkpoint()

    async def _route_batch(self, batch: SourceBatch) -> tuple[Routed, float, float, float]:
        begun = time.perf_counter()
        try:
            await self.refresh_grants()
            runs = self._routable(batch)
            for topic, messages in _by_topic(runs).items():
                await self.resolve_schemas(topic, messages)
            await self._ensure_states({(r[0], r[1]) for r in runs})
            started = time.perf_counter()
            self.backfills.start(self.handover, {(r[0], r[1]) for r in runs})
            states = self.states if self.keyed else None
            plan = plan_live(self.core, self.kernels, self.handover, runs, states)
            # The kernel works without the GIL in its own thread; meanwhile this thread stages
            # what was routed before (produce calls), so the two overlap.
            results = asyncio.get_running_loop().run_in_executor(
                self._kernel_thread, run_kernels, plan
            )
            if self._routed and not self._gate.locked():
                staging = time.perf_counter()
                await self._stage_routed()
                metrics.BATCH_PHASE.labels("stage").observe(time.perf_counter() - staging)
                if self.checkpoints.due(backlog=True):
                    self._start_checkpoint()
            routed = finish_live(
                plan,
                await results,
                self.actor,
                self.settings.topics.dlq,
                self.rebuilds.reported() if self.rebuilds else None,
            )
            past_markers(routed.offsets, batch.ends)
            routed_at = time.perf_counter()
        finally:
            self.feed.done(batch)
        return routed, begun, started, routed_at

    def _routable(self, batch: SourceBatch) -> list[Run]:
        """The batch's records of partitions still ours, by partition; a topic the catalog does
        not name is held back (not routed, not committed) until it does."""
        assigned, held = self.feed.assignment, self.feed.held
        runs = []
        unknown: dict[TP, int] = {}
        for run in partition_runs(batch.messages):
            tp = (run[0], run[1])
            if tp not in assigned or tp in held:
                continue
            if not self.grants.knows(tp[0]):
                unknown[tp] = run[2]
                continue
            runs.append(run)
        if unknown:
            log.warning(
                "holding back %s: not in the catalog (yet)",
                ", ".join(sorted({t for t, _ in unknown})),
            )
            self.feed.hold(unknown)
            self._check_catalog_soon()
        return runs

    async def resolve_schemas(self, topic: str, messages: list[Any]) -> None:
        """Fetch the writer schemas of ``messages`` the kernel does not know yet (the I/O edge:
        routing never waits on the registry). While the registry is down this waits and tries
        again; routing goes on once it answers."""
        route = self.core.routes[topic]
        ids = self.kernels.missing(topic, route, messages)
        attempt = 0
        while ids:
            try:
                await self._run(self.kernels.fetch, ids)
            except RegistryError as exc:
                attempt += 1
                pause = min(MAX_BACKOFF_S, 0.5 * 2 ** min(attempt, 10))
                log.error(
                    "cannot fetch schemas %s of %s (trying again in %.1f s): %s",
                    ids,
                    topic,
                    pause,
                    exc,
                )
                await asyncio.sleep(pause)
                continue
            self.kernels.compile(topic, route, ids)
            return

    def _check_catalog_soon(self) -> None:
        """A topic the pattern found may be a new entry the catalog check has not read yet: read
        the catalog in the background (at most once a second), so the live path never waits
        on it; the held partitions are released if it names them."""
        if self._catalog_check is not None and not self._catalog_check.done():
            return
        if time.monotonic() - self._catalog_checked < 1.0:
            return
        self._catalog_check = asyncio.ensure_future(self._check_catalog())

    async def _check_catalog(self) -> None:
        self._catalog_checked = time.monotonic()
        try:
            if await self._run(self.grants.load_catalog):
                log.info("the catalog changed: %d source topic(s)", len(self.core.routes))
                self.feed.release(set(self.core.routes))
        except ExchangeError as exc:
            log.error("cannot read the catalog (trying again in %.0f s): %s", CATALOG_CHECK_S, exc)

    def _may_route_ahead(self) -> bool:
        """Whether routing may go on before what was routed is staged: a few batches, and not
        more deliveries than ``router.in_flight_deliveries`` (they wait in memory)."""
        if len(self._routed) >= ROUTED_AHEAD:
            return False
        held = sum(routed.delivery_count() for routed, _ in self._routed)
        return held < self.settings.router.in_flight_deliveries

    async def _stage_routed(self) -> None:
        """Stage the live batches routed so far, in order, but those read before a rewind."""
        async with self._gate:
            self._stage_locked()

    def _stage_locked(self) -> None:
        routed, self._routed = self._routed, []
        for batch, epoch in routed:
            if epoch == self.feed.epoch:
                self.checkpoints.stage(batch)

    async def _stage_backfill(
        self, routed: Routed, handover: Handover, valid: Callable[[], bool]
    ) -> bool:
        # The runner holds self._routing: no live batch routes between this chunk and here.
        async with self._gate:
            if handover is not self.handover or not valid():
                return False
            # Live batches routed before this chunk go first: it read through their changes.
            self._stage_locked()
            self.checkpoints.stage(routed)
        if self.checkpoints.due(backlog=not self.feed.batches.empty()):
            self._start_checkpoint()
        return True

    # -- grants ------------------------------------------------------------------------------

    async def refresh_grants(self) -> None:
        async with self._grant_lock:
            now = _now()
            if not self.grants.due(now):
                return
            prepared = await self._run(self.grants.prepare, now)
            happenings = self.grants.apply(prepared, now)
            del prepared  # the grants it replaced go with it
            self.checkpoints.carry(happenings)
            self.backfills.start(self.handover, self.feed.assignment)
            if any(h.kind == "delivery.started" for h in happenings):
                # What preparing made and the replaced grants are garbage now.
                await self._run(release_free_memory)

    @Service.task
    async def _grants_timer(self) -> None:
        # Revocation and expiry take effect here even when no record arrives.
        interval = self.settings.router.grant_check_interval_s
        while not self.should_stop:
            await self.sleep(interval)
            stale = book_staleness(self.grants.book, self.settings.router.grant_book_stale_s)
            if stale is not None:
                self._cannot_go_on("the grant book", stale)
                return
            try:
                await self.refresh_grants()
            except ExchangeError as exc:
                log.error("cannot refresh grants (trying again in %.1f s): %s", interval, exc)

    @Service.timer(CATALOG_CHECK_S)
    async def _catalog_timer(self) -> None:
        await self._check_catalog()

    @Service.timer(REAP_INTERVAL_S)
    async def _reap_timer(self) -> None:
        # Topics of grant generations that ended or changed go (routing/reaper.py).
        book = self.grants.book
        _version, grants = book.snapshot()
        entries = set(self.grants.catalog.entries)
        try:
            await self._run(self.reaper.sweep, book.age_s(), grants, entries, _now())
        except KafkaOpError as exc:
            log.warning("cannot delete the topics of ended grant generations yet: %s", exc)

    @Service.timer(TRIM_INTERVAL_S)
    async def _trim_timer(self) -> None:
        # Routing frees what it made (delivery buffers, queued copies, batches) in other
        # threads' heaps; glibc keeps those pages until told. A trim costs a few ms.
        await self._run(release_free_memory)

    # -- checkpoints -------------------------------------------------------------------------

    def _start_checkpoint(self) -> None:
        if self._commit is None or self._commit.done():
            self._commit = asyncio.ensure_future(self._checkpoint())
            self._commit.add_done_callback(self._checkpoint_ended)

    def _checkpoint_ended(self, commit: asyncio.Future[None]) -> None:
        # A failure _checkpoint does not handle would otherwise wait unread until a revoke.
        exc = None if commit.cancelled() else commit.exception()
        if exc is not None:
            self._cannot_go_on("a checkpoint", exc)

    async def _await_commit(self) -> None:
        if self._commit is not None:
            await asyncio.shield(self._commit)

    async def _checkpoint(self) -> None:
        """Commit what is staged; on failure retry, abort and rewind, or re-open (module doc)."""
        async with self._gate:
            begun = time.perf_counter()
            cp = self.checkpoints
            try:
                cp.seal()
            except TransactionError as exc:
                await self._recover(exc)
                return
            busy = 0
            while True:
                try:
                    committed = await asyncio.wait_for(self._run(cp.finish), self._stall_s)
                    break
                except TimeoutError:
                    # librdkafka can hang in send_offsets_to_transaction after the group
                    # coordinator's broker came back (its issue #5511): a call that outlives
                    # its own timeouts is taken as a lost producer. The new one fences the old
                    # (its call then fails) and the committed state is re-read.
                    await self._recover(
                        TransactionError(
                            f"a checkpoint did not return in {self._stall_s:.0f} s",
                            code="_STALLED",
                            kind="fatal",
                        )
                    )
                    return
                except TransactionError as exc:
                    if exc.kind != "retriable":
                        await self._recover(exc)
                        return
                    metrics.CHECKPOINTS.labels("retried").inc()
                    if exc.code in COORDINATOR_BUSY and busy < BUSY_RETRIES:
                        # The coordinator still writes the last commit's markers: it is a
                        # matter of milliseconds (the backoff below held records 1-2 s).
                        busy += 1
                        await asyncio.sleep(BUSY_PAUSE_S * busy)
                        continue
                    await self._backoff(f"a checkpoint could not commit ({exc}); retrying")
            self._failures = 0
            self.feed.committed(committed.offsets)
            for tp, offset in committed.offsets.items():
                if tp in self.states and self.rebuilds.committed(tp, offset):
                    self.settled[tp] = offset
            for progress in committed.progress.values():
                self.handover.saved(progress)
            metrics.CHECKPOINTS.labels("committed").inc()
            metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - begun)
            metrics.CHECKPOINT_RECORDS.observe(committed.records)
            # What was routed meanwhile goes into the next transaction now, not when the next
            # batch comes (under light load that may be a while).
            self._stage_locked()

    async def _recover(self, exc: TransactionError) -> None:
        """With the gate held: abort and rewind, or re-open after a lost producer."""
        cp = self.checkpoints
        log.warning(
            "a checkpoint failed (%s: %s); routing again from the last commit", exc.kind, exc
        )
        if exc.kind == "abortable":
            try:
                await self._abort(cp)
                metrics.CHECKPOINTS.labels("aborted").inc()
                self._rewind(None, self.handover.committed())
                return
            except TransactionError as again:
                exc = again  # the abort failed fatally: re-open below
        cp.forget()
        await self._reopen()

    async def _abort(self, cp: Checkpointer) -> None:
        while True:
            try:
                await self._run(cp.abort)
                return
            except TransactionError as exc:
                if exc.kind != "retriable":
                    raise
                await self._backoff(f"aborting a checkpoint failed ({exc}); retrying")

    async def _reopen(self) -> None:
        """A new producer for the chain (fencing the old one's transaction), and the committed
        offsets and backfill progress re-read from Kafka."""
        while True:
            try:
                checkpointer = await self._run(self._new_checkpointer)
                positions = await self._run(self._committed_positions)
                progress = await self._run(read_progress, self.settings)
                break
            except KafkaOpError as exc:
                if not exc.retriable and exc.code not in _TRANSIENT:
                    raise RouterError(
                        f"the router cannot open its transactional producer again: {exc}",
                        code=exc.code,
                    ) from exc
                await self._backoff(f"re-opening the router's producer failed ({exc}); retrying")
        carried = self.checkpoints.carried
        self.checkpoints.hasher.close()
        # Its producer is lost (fatal or fenced): let go of it, so its poll thread ends and the
        # client is destroyed there (each re-open kept one before).
        self.checkpoints.txn.drop()
        self._checkpoints = checkpointer
        checkpointer.carry(carried)
        metrics.CHECKPOINTS.labels("reloaded").inc()
        self._rewind(positions, progress)

    def _committed_positions(self, partitions: Iterable[TP] | None = None) -> dict[TP, int]:
        """Blocking: the group's committed offsets of ``partitions`` (default: those
        assigned); 0 where the group committed none."""
        timeout = self.settings.kafka.request_timeout_s
        wanted = sorted(self.feed.assignment if partitions is None else partitions)

        def committed(consumer: Any) -> list[TopicPartition]:
            tps = [TopicPartition(t, p) for t, p in wanted]
            return consumer.committed(tps, timeout=timeout) if tps else []

        try:
            found = self.feed.call(committed).result(timeout * 2)
        except KafkaException as exc:
            raise KafkaOpError.wrap("cannot read the committed source offsets", exc) from exc
        except TimeoutError as exc:
            raise KafkaOpError(
                "timed out reading the committed source offsets", code="_TIMED_OUT", retriable=True
            ) from exc
        # No committed offset yet: from the start (the group's auto.offset.reset).
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}

    def _rewind(self, positions: dict[TP, int] | None, progress: list[Progress]) -> None:
        """Forget everything since the last commit: read again from the committed offsets (or
        ``positions``), backfills again from ``progress``."""
        assigned = self.feed.assignment
        if positions is not None:
            # The group's offset of a partition being rebuilt is the old router's until the
            # rebuild's first checkpoint: the rebuild reads again from where it stands.
            positions = {**positions, **self.rebuilds.positions()}
        self.feed.rewind(positions)
        for state in self.states.values():
            state.rewind()
        self.handover.release(list(self.handover.partitions()))
        self.handover = Handover(progress)
        for tp, settled in self.settled.items():
            self.handover.resume(tp[0], tp[1], settled)
        for tp, until in self.rebuilds.bounds().items():
            self.handover.resume(tp[0], tp[1], until)
        self.backfills.start(self.handover, assigned)

    async def _backoff(self, what: str) -> None:
        self._failures += 1
        pause = min(MAX_BACKOFF_S, 0.5 * 2 ** min(self._failures, 10))
        log.warning("%s in %.1f s", what, pause)
        await asyncio.sleep(pause)

    # -- partition moves (called in the feed's thread) ---------------------------------------

    def assigned(self, partitions: list[TP]) -> Future[Mapping[TP, int]]:
        log.info("assigned %d source partition(s)", len(partitions))
        return self._call(self._assigned(partitions))

    def revoked(self, partitions: list[TP]) -> Future[None]:
        log.info("giving up %d source partition(s)", len(partitions))
        return self._call(self._revoked(partitions))

    def lost(self, partitions: list[TP]) -> Future[None]:
        log.warning("lost %d source partition(s) (the group moved on without us)", len(partitions))
        return self._call(self._lost(partitions))

    def _call(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _assigned(self, partitions: list[TP]) -> Mapping[TP, int]:
        """Their states read back; returns where the feed reads a partition from instead of
        its committed offset (a state rebuilt from the log start)."""
        starts = await self._ensure_states(partitions, assigning=True)
        self.backfills.start(self.handover, partitions)
        return starts

    async def _revoked(self, partitions: list[TP]) -> None:
        """Commit what was routed from them before they go (the next owner starts there)."""
        self.handover.release(partitions)
        await self._await_commit()
        await self._stage_routed()  # routed while they were still ours
        if not self.checkpoints.pending.empty():
            await self._checkpoint()
        # Batches read but not routed yet may hold records of the partitions given up; they
        # are dropped, and the partitions kept are read again from what was just committed.
        self.feed.rewind()
        # What was routed ahead from the kept partitions is routed again: its state too.
        for state in self.states.values():
            state.rewind()
        self._drop_states(partitions)

    async def _lost(self, partitions: list[TP]) -> None:
        """Their offsets can no longer be committed: abort and route the rest again."""
        self.handover.release(partitions)
        await self._await_commit()
        async with self._gate:
            await self._recover(TransactionError("partitions lost", code="_LOST", kind="abortable"))
        self._drop_states(partitions)

    # -- per-key state -----------------------------------------------------------------------

    async def _ensure_states(
        self, partitions: Iterable[TP], assigning: bool = False
    ) -> Mapping[TP, int]:
        """The per-key state of each source partition owned, read back from its changelog the
        first time (before anything of the partition is routed). ``assigning``: the feed has
        not read the partitions yet, so a state never checkpointed may be rebuilt from the log
        start (``rebuild.py``); returns where to read those from."""
        if not self.keyed:
            return {}
        missing = sorted(
            tp for tp in partitions if tp not in self.states and tp[0] in self.core.routes
        )
        while missing:
            try:
                restored = await self._run(self._restore_states, missing, assigning)
                starts = {}
                for tp, (state, settled) in restored.items():
                    self.states[tp] = state
                    if isinstance(settled, Rebuild):
                        self.rebuilds.start(tp, settled)
                        self.handover.resume(tp[0], tp[1], settled.until)
                        starts[tp] = settled.restart_at
                        continue
                    self.settled[tp] = max(self.settled.get(tp, 0), settled)
                    self.handover.resume(tp[0], tp[1], self.settled[tp])
                return starts
            except KafkaOpError as exc:
                # Ridden out like a checkpoint: nothing of these partitions is routed meanwhile.
                if not exc.retriable and exc.code not in _TRANSIENT:
                    raise RouterError(
                        f"the router cannot read its per-key state back: {exc}", code=exc.code
                    ) from exc
                await self._backoff(f"reading the per-key state back failed ({exc}); retrying")
        return {}

    def _restore_states(
        self, partitions: list[TP], assigning: bool
    ) -> dict[TP, tuple[KeyState, int | Rebuild]]:
        """Blocking: the changelogs made if missing, and each partition's state read back,
        with the source offset its rows routed up to (the last checkpoint's settled-offset
        record; 0 for a state never checkpointed), or the rebuild it needs first."""
        topics = self.settings.topics
        admin = self.grants.admin
        counts = admin.partition_counts()
        wanted = {self._changelog_of(t): counts.get(t, p + 1) for t, p in partitions}
        ensure_changelogs(admin, wanted, topics.replication_factor)
        read_back: dict[TP, tuple[KeyState, int | None]] = {}
        for topic, partition in partitions:
            begun = time.perf_counter()
            changelog = self._changelog_of(topic)
            state, settled, read = read_state(self.settings, changelog, partition)
            log.info(
                "per-key state of %s[%d]: %d keys from %d changelog records in %.1f s",
                topic,
                partition,
                state.sizes()[0],
                read,
                time.perf_counter() - begun,
            )
            read_back[topic, partition] = (state, settled)
        rebuilds = self._plan_rebuilds(read_back) if assigning else {}
        return {
            tp: (state, rebuilds.get(tp, settled if settled is not None else 0))
            for tp, (state, settled) in read_back.items()
        }

    def _plan_rebuilds(self, read_back: dict[TP, tuple[KeyState, int | None]]) -> dict[TP, Rebuild]:
        """Blocking: the partitions whose state was never checkpointed and must be built from
        their log start before their backfills run, each with its :class:`Rebuild`
        (``rebuild.py``)."""
        fresh = [tp for tp, (_state, settled) in read_back.items() if settled is None]
        if not fresh:
            return {}
        committed = self._committed_positions(fresh)
        marks = self._watermarks(fresh)
        out = {}
        for tp in fresh:
            low, stable_end = marks[tp]
            plan = plan_rebuild(None, committed.get(tp) or None, low, stable_end)
            if plan is None:
                continue
            bound, reported = plan
            last = last_record_below(self.settings.kafka, tp[0], tp[1], low, bound)
            if last is None:
                continue
            log.warning(
                "per-key state of %s[%d] was never checkpointed; %s: building it from offset "
                "%d to %d before its backfills run (they give current rows, not history)",
                tp[0],
                tp[1],
                f"the router's group routed it up to offset {reported} without per-key state "
                "(an exchange upgraded, or its changelog deleted)"
                if reported
                else "the router's first start on it",
                low,
                last + 1,
            )
            out[tp] = Rebuild(until=last + 1, restart_at=low, reported=reported)
        return out

    def _watermarks(self, partitions: list[TP]) -> dict[TP, tuple[int, int]]:
        """Blocking: each partition's log start and last stable offset (the feed's consumer
        reads committed, and librdkafka's query then answers with the last stable offset)."""
        timeout = self.settings.kafka.request_timeout_s

        def marks(consumer: Any) -> dict[TP, tuple[int, int]]:
            return {
                tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=timeout)
                for tp in partitions
            }

        try:
            found: dict[TP, tuple[int, int]] = self.feed.call(marks).result(
                timeout * (len(partitions) + 1)
            )
            return found
        except KafkaException as exc:
            raise KafkaOpError.wrap("cannot read the source partitions' log starts", exc) from exc
        except TimeoutError as exc:
            raise KafkaOpError(
                "timed out reading the source partitions' log starts",
                code="_TIMED_OUT",
                retriable=True,
            ) from exc

    def _drop_states(self, partitions: Iterable[TP]) -> None:
        partitions = list(partitions)
        self.rebuilds.drop(partitions)
        for tp in partitions:
            self.states.pop(tp, None)
            self.settled.pop(tp, None)

    def _current(self, topic: str, partition: int) -> tuple[KeyState | None, int | None] | None:
        """What a backfill of the partition routes with: its per-key state and the offset the
        state's committed rows routed up to (read first, so the rows read after are at least
        as new); ``(None, None)`` without per-key state; ``None`` while the state or that
        offset is not known yet (the backfill waits)."""
        if not self.keyed:
            return None, None
        tp = (topic, partition)
        settled, state = self.settled.get(tp), self.states.get(tp)
        if state is None or settled is None:
            return None
        return state, settled

    # -- helpers -----------------------------------------------------------------------------

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _cannot_go_on(self, what: str, exc: BaseException) -> None:
        """The worker cannot go on: say why and stop (a backfill or a checkpoint failed in a
        way retrying cannot mend)."""
        log.critical("%s failed: %s", what, exc, exc_info=exc)
        self._crashing = asyncio.ensure_future(self.crash(exc))


#: Codes of errors that go away by themselves (the broker or coordinator is back later).
_TRANSIENT = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_TIMED_OUT",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
    }
)


def past_markers(offsets: dict[TP, int], ends: Mapping[TP, tuple[int, int]]) -> None:
    """Commit a partition routed to its batch's last record at the consumer's position there
    (past the transaction markers after that record, ``kafka.source.batch_ends``); a partition
    routed only part of the way keeps its offset."""
    for tp, (after_last, position) in ends.items():
        if offsets.get(tp) == after_last and position > after_last:
            offsets[tp] = position


def read_state(
    settings: ExchangeSettings, changelog: str, partition: int
) -> tuple[KeyState, int | None, int]:
    """Blocking: one partition's per-key state read back from its changelog, the source offset
    its rows routed up to (``None`` before its first checkpoint), and the records read."""
    state = KeyState()
    settled: int | None = None

    def restore(records: ChangelogRecords) -> None:
        nonlocal settled
        rows, at = split_settled(records)
        state.restore(rows)
        if at is not None:
            settled = at

    read = read_changelog(settings.kafka, changelog, partition, restore)
    return state, settled, read


def book_staleness(book: GrantBook, limit_s: float) -> RouterError | None:
    """Why the router must stop because its grants may be out of date, or ``None``.

    Also sets the book's metrics. The book recovers from failures by itself; past ``limit_s``
    the router fails closed rather than go on delivering under grants that may have been
    revoked meanwhile.
    """
    age = book.age_s()
    metrics.GRANT_BOOK_AGE.set(age)
    metrics.GRANT_BOOK_FAILURES.set(book.failures)
    if age < limit_s:
        return None
    if not book.alive:
        why = "its reader thread has ended"
    elif book.failure is not None:
        why = f"its reader keeps failing (last: {book.failure[0]})"
    else:
        why = "its reader has not caught up"
    return RouterError(
        f"the grants may be out of date: the router has not followed the grants topic for "
        f"{age:.0f} s ({why}; router.grant_book_stale_s is {limit_s:.0f}). It stops rather "
        "than deliver under grants that may have been revoked; restart it once the grants "
        "topic can be read",
        code="GRANTS_STALE",
    )


def _by_topic(runs: list[Run]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for run in runs:
        out.setdefault(run[0], []).extend(run[4])
    return out


def read_progress_patiently(settings: ExchangeSettings) -> list[Progress]:
    """:func:`read_progress`, waiting while a transaction of a worker that stopped holds the
    topic's committed end back (the broker aborts it after the producer's
    ``transaction.timeout.ms``, 60 s by default)."""
    deadline = time.monotonic() + PROGRESS_WAIT_S
    while True:
        try:
            return read_progress(settings)
        except KafkaOpError as exc:
            if exc.code != "_TIMED_OUT" or time.monotonic() > deadline:
                raise
            log.warning(
                "backfill progress not readable to its end yet (%s): an open transaction of a "
                "stopped worker, aborted by the broker within a minute; reading again",
                exc,
            )


def read_progress(settings: ExchangeSettings) -> list[Progress]:
    """Saved backfill progress (committed writes: it is written in the router's checkpoints)."""
    topic = settings.topics.router_backfills
    saved = []
    for key, value in read_table(settings.kafka, topic, committed=True).items():
        try:
            saved.append(Progress.decode(value))
        except ProgressError as exc:
            # Without it the grant is backfilled again, from the start.
            log.warning("ignoring backfill progress %r on %s: %s", key, topic, exc)
    return saved


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
