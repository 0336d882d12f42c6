"""The router's source records: a confluent-kafka consumer in a thread of its own.

faust's own consumer hands each record through several asyncio tasks (about 100 µs of CPU per
record, measured); a confluent-kafka ``consume(500)`` costs about 1 µs per record. So the router
reads with one :class:`confluent_kafka.Consumer` here, in a thread, and hands whole batches to
the event loop.

- Subscribed by pattern (``^src\\.``): a new catalog entry's topic is picked up without a restart.
- ``cooperative-sticky``: a rebalance moves only the partitions that change owner. The
  :class:`Rebalance` listener's calls run in this thread while librdkafka waits; the router's
  revoke finishes its checkpoint there before the partitions are given up.
- Back-pressure: at most ``max_batches`` batches wait in the loop; the thread waits for room.
  If it waits long (the loop is stuck retrying a checkpoint), the assigned partitions are paused
  and the thread keeps polling (the group would otherwise take them away after
  ``max.poll.interval.ms``).
- :meth:`SourceFeed.rewind`: after a failed checkpoint, the partitions go back to the last
  committed offsets. Batches read before the rewind carry an older ``epoch`` and are dropped.

Offsets are never committed by the consumer itself: they go into the router's transactions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from exchange.kafka.errors import KafkaOpError

__all__ = ["Rebalance", "SourceBatch", "SourceFeed", "batch_ends", "read_chunk"]

log = logging.getLogger(__name__)
TP = tuple[str, int]
T = TypeVar("T")
#: The shortest pause between two identical consumer error logs.
ERROR_LOG_EVERY_S = 30.0


class Rebalance(Protocol):
    """Told of partition moves, in the feed's thread. Each returns a future; the feed waits for
    it (librdkafka waits for the callback), serving :meth:`SourceFeed.call` meanwhile, since
    handling a move may need the consumer (the committed offsets). ``assigned``'s result says
    where to read partitions from instead of their committed offsets."""

    def assigned(self, partitions: list[TP]) -> Future[Mapping[TP, int]]: ...
    def revoked(self, partitions: list[TP]) -> Future[None]: ...
    def lost(self, partitions: list[TP]) -> Future[None]: ...


@dataclass(frozen=True)
class SourceBatch:
    epoch: int
    #: confluent-kafka ``Message`` objects, none of them an error.
    messages: list[Any]
    #: Per partition: the offset after the batch's last record, and the consumer's position
    #: then (:func:`batch_ends`).
    ends: Mapping[TP, tuple[int, int]] = field(default_factory=dict)


def batch_ends(consumer: Consumer, messages: list[Any]) -> dict[TP, tuple[int, int]]:
    """Per partition of ``messages``: the offset after its last record, and the consumer's
    position, which lies past any transaction markers right after that record (a connector's
    commits). Committing the position, not the offset after the record, leaves a caught-up
    router no lag of one marker per partition (librdkafka issue 3917; the Java consumer's
    ``position`` steps over markers the same way)."""
    after: dict[TP, int] = {}
    for m in messages:
        after[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
    if not after:
        return {}
    positions = consumer.position([TopicPartition(t, p) for t, p in after])
    return {
        (tp.topic, tp.partition): (after[(tp.topic, tp.partition)], tp.offset)
        for tp in positions
        if tp.error is None
    }


class SourceFeed:
    """Reads the source topics into ``batches`` (an asyncio queue) from a thread."""

    def __init__(
        self,
        config: dict[str, Any],
        pattern: str,
        listener: Rebalance,
        batch_size: int,
        wait_s: float,
        max_batches: int = 8,
    ) -> None:
        self._config = {
            **config,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            # The router's own deliveries and audit are transactional; sources are read
            # committed too, so an aborted connector write is never routed.
            "isolation.level": "read_committed",
            # Read ahead of routing at most 16 MiB (under a second at full speed): librdkafka's
            # 64 MiB default was most of what a catching-up worker's peak RSS held above its
            # steady size (bench/key_state.py). At the bound librdkafka postpones a partition's
            # next fetch by fetch.queue.backoff.ms: its 1 s default idled the worker
            # (docs/benchmarks.md, router throughput), so it retries after 10 ms.
            "queued.max.messages.kbytes": 16_384,
            "fetch.queue.backoff.ms": 10,
            # A new src.* topic is found by the next metadata refresh.
            "topic.metadata.refresh.interval.ms": 10_000,
        }
        self._pattern = pattern
        self._listener = listener
        self._batch_size = batch_size
        self._wait_s = wait_s
        self._slots = threading.Semaphore(max_batches)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches: asyncio.Queue[SourceBatch] = asyncio.Queue()
        #: Batches of an older epoch were read before a rewind.
        self.epoch = 0
        self._applied_epoch = 0
        self._rewind: dict[TP, int] = {}
        #: Per partition, where a rewind goes back to: the last committed offset, or the first
        #: offset read since the partition was assigned (its committed offset then).
        self._restart_at: dict[TP, int] = {}
        self.assignment: set[TP] = set()
        self._paused = False
        #: Messages returned while paused, handed over with the next batch.
        self._carry: list[Any] = []
        #: How long the thread waits for room in the loop before pausing its partitions
        #: (pausing drops librdkafka's prefetched records, which are then fetched again).
        self._block_s = 5.0
        self._last_error: dict[str, float] = {}
        self._metadata: Any = None
        #: Partitions held back, with the offset to read them from again.
        self.held: dict[TP, int] = {}
        self._holding: dict[TP, int] = {}
        self._releasing: set[TP] = set()
        self._calls: list[tuple[Callable[[Consumer], Any], Future[Any]]] = []
        #: Set when the thread ended on an error it cannot get past.
        self.failure: BaseException | None = None

    # -- from the event loop -----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="source-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Blocking (run it in an executor): stop reading, leave the group (revoking every
        partition through the listener), close."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def done(self, _batch: SourceBatch) -> None:
        """A batch taken from ``batches`` was handled (or dropped): room for the next."""
        self._slots.release()

    def committed(self, offsets: Mapping[TP, int]) -> None:
        """These offsets are committed: a rewind goes back no further."""
        with self._lock:
            self._restart_at.update(offsets)

    def rewind(self, positions: Mapping[TP, int] | None = None) -> None:
        """Read again from the last committed offset of each partition (or from ``positions``,
        after the committed offsets were re-read); drops the batches read before."""
        with self._lock:
            self.epoch += 1
            if positions is not None:
                self._restart_at.update(positions)
            self._rewind = dict(self._restart_at)
        while not self.batches.empty():
            self.done(self.batches.get_nowait())

    def hold(self, positions: Mapping[TP, int]) -> None:
        """Stop reading these partitions, to read them again from ``positions`` once
        :meth:`release` d (a topic the pattern found that the catalog does not name yet)."""
        with self._lock:
            for tp, offset in positions.items():
                self.held.setdefault(tp, offset)
                self._holding[tp] = self.held[tp]

    def release(self, topics: set[str]) -> None:
        """Read the held partitions of ``topics`` again."""
        with self._lock:
            for tp in [tp for tp in self.held if tp[0] in topics]:
                del self.held[tp]
                self._holding.pop(tp, None)
                self._releasing.add(tp)

    def group_metadata(self) -> Any:
        """The group's metadata as of the last read (KIP-447 fencing of offset commits)."""
        if self._metadata is None:
            raise KafkaOpError("the source feed has not joined its group", code="NOT_STARTED")
        return self._metadata

    def call(self, fn: Callable[[Consumer], T]) -> Future[T]:
        """Run ``fn(consumer)`` in the feed's thread (librdkafka blocks a consumer call made
        from another thread while this one reads: measured, ``consumer_group_metadata``)."""
        future: Future[T] = Future()
        with self._lock:
            self._calls.append((fn, future))
        return future

    # -- the feed's thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            consumer = self._consumer = Consumer(self._config)
            consumer.subscribe(
                [self._pattern],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            while not self._stopping.is_set():
                self._step(consumer)
            consumer.close()
            self._serve_calls(consumer)
        except BaseException as exc:
            log.exception("the source feed stopped")
            self.failure = exc
            self._hand(SourceBatch(-1, []))

    def _step(self, consumer: Consumer) -> None:
        self._apply_holds(consumer)
        self._apply_rewind(consumer)
        self._serve_calls(consumer)
        if not self._slots.acquire(timeout=self._block_s):
            # The loop is far behind (a checkpoint retrying while the broker is away): pause,
            # and keep polling so the group keeps this member and rebalances are served.
            self._pause(consumer, True)
            self._carry.extend(consumer.consume(1, timeout=0.1))
            return
        self._pause(consumer, False)
        try:
            messages = consumer.consume(self._batch_size, timeout=self._wait_s)
        except BaseException:
            self._slots.release()
            raise
        if self._carry:
            # Read while pausing (fetched before the pause took effect): not to be lost.
            messages, self._carry = [*self._carry, *messages], []
        # 30-80 µs; taken after every read so it follows the group's generation.
        self._metadata = consumer.consumer_group_metadata()
        good = [m for m in messages if not self._is_error(m)]
        with self._lock:
            stale = self._applied_epoch != self.epoch
            epoch = self._applied_epoch
            if not stale:
                restart_at = self._restart_at
                for m in good:
                    tp = (str(m.topic()), int(m.partition() or 0))
                    if tp not in restart_at:
                        restart_at[tp] = int(m.offset() or 0)
        if not good or stale:
            self._slots.release()
            return
        self._hand(SourceBatch(epoch, good, batch_ends(consumer, good)))

    def _hand(self, batch: SourceBatch) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.batches.put_nowait, batch)

    def _apply_holds(self, consumer: Consumer) -> None:
        with self._lock:
            holding, self._holding = self._holding, {}
            releasing, self._releasing = self._releasing, set()
        for (topic, partition), offset in holding.items():
            if (topic, partition) in self.assignment:
                tp = TopicPartition(topic, partition, offset)
                consumer.pause([tp])
                try:
                    consumer.seek(tp)
                except KafkaException as exc:
                    log.debug("seek %s[%d] to %d: %s", topic, partition, offset, exc)
        resume = [TopicPartition(t, p) for t, p in releasing if (t, p) in self.assignment]
        if resume and not self._paused:
            consumer.resume(resume)

    def _serve_calls(self, consumer: Consumer) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, future in calls:
            try:
                future.set_result(fn(consumer))
            except BaseException as exc:
                future.set_exception(exc)

    def _apply_rewind(self, consumer: Consumer) -> None:
        with self._lock:
            if self._applied_epoch == self.epoch:
                return
            positions, self._rewind = self._rewind, {}
            epoch = self.epoch
        self._carry = []
        for (topic, partition), offset in positions.items():
            if (topic, partition) not in self.assignment:
                continue
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Not fetching yet: the position is the committed offset anyway.
                log.debug("seek %s[%d] to %d: %s", topic, partition, offset, exc)
        with self._lock:
            self._applied_epoch = epoch

    def _pause(self, consumer: Consumer, pause: bool) -> None:
        if pause == self._paused or not self.assignment:
            self._paused = pause and bool(self.assignment)
            return
        held = self.held
        tps = [TopicPartition(t, p) for t, p in self.assignment if (t, p) not in held]
        (consumer.pause if pause else consumer.resume)(tps)
        self._paused = pause

    def _is_error(self, msg: Any) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.fatal():
            raise KafkaOpError.wrap("the source consumer failed", KafkaException(err))
        if err.code() != KafkaError._PARTITION_EOF:
            # Broker away, a topic deleted: librdkafka retries by itself; say so now and then.
            now = time.monotonic()
            if now - self._last_error.get(err.name(), 0.0) >= ERROR_LOG_EVERY_S:
                self._last_error[err.name()] = now
                log.warning("reading the source topics: %s (retrying)", err.str())
        return True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.assignment.update(tps)
        if self._paused and partitions:
            consumer.pause(partitions)
        self._metadata = consumer.consumer_group_metadata()
        starts = self._wait(consumer, self._listener.assigned(tps))
        if starts:
            # Assigning here replaces the client's own assignment after this callback, which
            # starts each partition at its committed offset (OFFSET_INVALID keeps that).
            consumer.incremental_assign(
                [TopicPartition(t, p, starts.get((t, p), OFFSET_INVALID)) for t, p in tps]
            )
            if self._paused:
                consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._metadata = consumer.consumer_group_metadata()
        self._wait(consumer, self._listener.revoked(tps))
        self._forget(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._wait(consumer, self._listener.lost(tps))
        self._forget(tps)

    def _wait(self, consumer: Consumer, handled: Future[T]) -> T:
        while True:
            try:
                return handled.result(timeout=0.05)
            except TimeoutError:
                self._serve_calls(consumer)

    def _forget(self, tps: list[TP]) -> None:
        self.assignment.difference_update(tps)
        with self._lock:
            for tp in tps:
                self.held.pop(tp, None)
                self._restart_at.pop(tp, None)
                self._rewind.pop(tp, None)
                self._holding.pop(tp, None)


def read_chunk(consumer: Consumer, size: int, wait_s: float = 0.2) -> tuple[list[Any], bool]:
    """Up to ``size`` records of an assigned partition (a backfill's reader); ``True`` when the
    read reached the partition's end (librdkafka's end-of-partition event, which comes each
    time the reader gets there). Nothing within the wait is not the end: a reader just
    assigned may not have fetched yet (on a busy machine a backfill took that for the end and
    handed over at offset 0, past records the live stream had skipped)."""
    records: list[Any] = []
    at_end = False
    # A short wait: under a steady stream the reader must keep pace, not wait for a full chunk.
    for msg in consumer.consume(size, timeout=wait_s):
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                raise KafkaOpError.wrap("backfill read failed", KafkaException(err))
            at_end = True
            continue
        at_end = False  # records that arrived after the end was seen
        records.append(msg)
    return records, at_end
