"""A transactional confluent-kafka producer, with its errors sorted by what the caller must do.

Kafka's transactions make a group of writes (and a consumer's source offsets) visible to
``read_committed`` readers together or not at all. librdkafka tells three kinds of failure
apart, and each asks for something different of the caller:

- *retriable* (a commit or ``send_offsets`` timed out, the broker is away): call it again, the
  transaction is intact;
- *abortable* (a delivery failed, the transaction timed out, the consumer group moved on): abort,
  then redo everything since the last commit;
- *fatal* (another process opened the same ``transactional.id``, or the producer's epoch is
  gone): this producer is done; a new one must be made, which fences whatever is left of the old.

The client is made on :meth:`TransactionalProducer.open`, not in the constructor (no network in
constructors).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from exchange._kernel import Deliveries, NativeProducer, ProduceError
from exchange.kafka.errors import KafkaOpError
from exchange.kafka.native import attach

__all__ = ["QUEUE_FULL_WAIT_S", "TransactionError", "TransactionalProducer", "failure_kind"]

FailureKind = Literal["retriable", "abortable", "fatal", "fenced"]
#: How long ``BufferError`` (librdkafka's local queue full) is waited out before giving up.
QUEUE_FULL_WAIT_S = 30.0
#: Errors that mean another process owns this ``transactional.id`` now.
FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


class TransactionError(KafkaOpError):
    """A transactional call failed; ``kind`` says what the caller must do (module docstring)."""

    def __init__(self, message: str, *, code: str | None, kind: FailureKind) -> None:
        super().__init__(message, code=code, retriable=kind == "retriable")
        self.kind: FailureKind = kind


def failure_kind(err: KafkaError) -> FailureKind:
    """What a failed transactional call's error asks of the caller."""
    if err.code() in FENCED_CODES:
        return "fenced"
    # confluent-kafka's produce reports a fatal producer as _FATAL without the fatal flag.
    if err.fatal() or err.code() == KafkaError._FATAL:
        return "fatal"
    if err.txn_requires_abort():
        return "abortable"
    if err.retriable() or err.code() == KafkaError._TIMED_OUT:
        return "retriable"
    # librdkafka puts the transaction in an abortable state for anything else it reports from a
    # transactional call (its docs: "treat as abortable if not retriable and not fatal").
    return "abortable"


def _refused(exc: ProduceError) -> TransactionError:
    """The kernel's refusal of a delivery, sorted like confluent-kafka's."""
    code, _name, text, fatal, retriable, abortable = exc.args
    err = KafkaError(code, text, fatal=fatal, retriable=retriable, txn_requires_abort=abortable)
    return TransactionError(text, code=err.name(), kind=failure_kind(err))


def _wrap(what: str, exc: KafkaException) -> TransactionError:
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError):
        return TransactionError(f"{what}: {exc}", code=None, kind="abortable")
    return TransactionError(f"{what}: {err.str()}", code=err.name(), kind=failure_kind(err))


class TransactionalProducer:
    """One ``transactional.id``'s producer: begin, produce, send offsets, commit or abort."""

    def __init__(
        self,
        config: dict[str, Any],
        transactional_id: str,
        timeout_s: float,
        *,
        native: bool = False,
    ) -> None:
        """``native``: hand :class:`Deliveries` to librdkafka directly (:mod:`.native`)."""
        self.transactional_id = transactional_id
        self._native_wanted = native
        self._native: NativeProducer | None = None
        self._config = {
            **config,
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            # Nothing here waits on a record's own report (the commit does): reports only for
            # failures spare the poll loop one callback per record.
            "delivery.report.only.error": True,
        }
        self._timeout = timeout_s
        self._producer: Producer | None = None
        #: Notified by the poll thread each time it served events (acknowledgements).
        self._served = threading.Condition()
        #: A transaction is open (begun, not yet committed or aborted).
        self.in_transaction = False

    @property
    def client(self) -> Producer:
        if self._producer is None:
            raise KafkaOpError(
                f"producer {self.transactional_id} is not open", code="NOT_OPEN", retriable=False
            )
        return self._producer

    def open(self) -> None:
        """Make the client and register the id with the coordinator: any earlier producer of
        the id is fenced and its open transaction aborted. Safe to call again after a fatal
        error (the old client is dropped)."""
        self.drop()
        producer = Producer(self._config)
        try:
            producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise _wrap(f"cannot open transactional producer {self.transactional_id}", exc) from exc
        self._producer = producer
        if self._native_wanted:
            self._native = attach(producer, str(self._config.get("client.id", "rdkafka")))
        threading.Thread(
            target=self._serve, args=(producer,), name="producer-poll", daemon=True
        ).start()

    def _serve(self, producer: Producer) -> None:
        """Serve the client's queue in a thread of its own while it is the current one.

        librdkafka hands every acknowledged record back through this queue to be freed (about
        0.7 µs a record, measured in the router); served here, with the GIL released while it
        waits, that work leaves the thread that routes and produces."""
        while self._producer is producer:
            if producer.poll(0.1):
                with self._served:
                    self._served.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Wait until every record handed over is acknowledged and served by the poll thread;
        whether that happened within ``timeout_s``.

        ``commit_transaction`` flushes first, and librdkafka's flush polls the client's queue
        in 10 ms steps: with the poll thread taking the acknowledgements from that queue, the
        flush slept its full 10 ms on every commit (router checkpoints 11 ms at p50; 1.6 ms
        with this wait first, the flush then finding nothing outstanding)."""
        producer = self.client
        deadline = time.monotonic() + timeout_s
        with self._served:
            while len(producer):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._served.wait(min(left, 0.01))
        return True

    def drop(self) -> None:
        """Forget the client without waiting (after a fatal error, or before a new one)."""
        self._producer = None
        self._native = None
        self.in_transaction = False

    def begin(self) -> None:
        if self.in_transaction:
            return
        try:
            self.client.begin_transaction()
        except KafkaException as exc:
            raise _wrap("cannot begin a transaction", exc) from exc
        self.in_transaction = True

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, str | bytes | None]] | None = None,
        partition: int = -1,
    ) -> None:
        """Hand a record over; ``BufferError`` when the local queue is full (poll, then again)."""
        try:
            if headers:
                self.client.produce(
                    topic, value=value, key=key, headers=list(headers), partition=partition
                )
            else:
                self.client.produce(topic, value=value, key=key, partition=partition)
        except KafkaException as exc:
            raise _wrap(f"cannot produce to {topic}", exc) from exc

    def produce_waiting(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, str | bytes | None]] | None = None,
        partition: int = -1,
        wait_s: float = QUEUE_FULL_WAIT_S,
    ) -> None:
        """:meth:`produce`, waiting while the local queue is full (acknowledgements drain it);
        ``BufferError`` once it stayed full for ``wait_s`` (the broker is away)."""
        deadline = None
        while True:
            try:
                self.produce(topic, key, value, headers, partition)
                return
            except BufferError:
                deadline = self._wait_for_room(deadline, wait_s)

    def produce_all(
        self, topic: str, deliveries: Deliveries, wait_s: float = QUEUE_FULL_WAIT_S
    ) -> None:
        """:meth:`produce_many` of all ``deliveries``, waiting while the local queue is full;
        ``BufferError`` once it took none of them for ``wait_s``."""
        done, deadline = 0, None
        while True:
            before = done
            done = self.produce_many(topic, deliveries, done)
            if done == len(deliveries):
                return
            if done > before:
                deadline = None  # the wait counts from the last delivery handed over
            deadline = self._wait_for_room(deadline, wait_s)

    def _wait_for_room(self, deadline: float | None, wait_s: float) -> float:
        """One wait on a full local queue (acknowledgements drain it); the deadline it counts
        to, ``BufferError`` past it (the broker is away)."""
        now = time.monotonic()
        deadline = deadline or now + wait_s
        if now > deadline:
            raise BufferError(f"the producer's queue stayed full for {wait_s} s")
        self.poll(0.05)
        return deadline

    def produce_many(self, topic: str, deliveries: Deliveries, start: int = 0) -> int:
        """Hand over ``deliveries`` from ``start`` on; returns the index of the first one not
        handed over, their number when all were. It stops early only when the local queue is
        full: poll, then call again from there.

        Natively (about 0.26 µs a delivery, without the GIL) when the producer could be
        attached; otherwise a loop over confluent-kafka's ``produce`` (about 0.7 µs a
        delivery, with the GIL)."""
        native = self._native  # one read: another thread may drop the producer meanwhile
        if native is not None:
            try:
                return deliveries.produce(native, topic, start)
            except ProduceError as exc:
                raise _refused(exc) from exc
        return self._produce_columns(topic, deliveries, start)

    def _produce_columns(self, topic: str, deliveries: Deliveries, start: int) -> int:
        produce = self.client.produce
        keys, values = deliveries.keys()[start:], deliveries.values()[start:]
        partitions, headers = deliveries.partitions()[start:], deliveries.headers()
        i = start
        try:
            for key, value, partition in zip(keys, values, partitions, strict=True):
                h = headers.get(i)
                if h is None:
                    produce(topic, value, key, partition)
                else:
                    produce(topic, value, key, partition, headers=list(h))
                i += 1
        except BufferError:
            return i
        except KafkaException as exc:
            raise _wrap(f"cannot produce to {topic}", exc) from exc
        return i

    def poll(self, timeout_s: float = 0) -> None:
        self.client.poll(timeout_s)

    def queued(self) -> int:
        """Records handed over and not yet acknowledged."""
        return len(self.client) if self._producer is not None else 0

    def send_offsets(self, offsets: Sequence[TopicPartition], group_metadata: Any) -> None:
        """Commit a consumer's offsets as part of the transaction (KIP-447: the group's
        generation fences a worker that lost its partitions)."""
        try:
            self.client.send_offsets_to_transaction(list(offsets), group_metadata, self._timeout)
        except KafkaException as exc:
            raise _wrap("cannot add the source offsets to the transaction", exc) from exc

    def commit(self) -> None:
        """Flush and commit; a retriable failure leaves the transaction open to commit again."""
        try:
            # Not drained in time: the commit's own flush waits out what is left, within the
            # same timeout (the caller's stall detection counts on it).
            deadline = time.monotonic() + self._timeout
            self.drain(self._timeout)
            self.client.commit_transaction(max(deadline - time.monotonic(), 1.0))
        except KafkaException as exc:
            error = _wrap("cannot commit the transaction", exc)
            if error.kind != "retriable":
                self.in_transaction = error.kind == "abortable"
            raise error from exc
        self.in_transaction = False

    def abort(self) -> None:
        """Abort the open transaction (no-op without one); a fatal producer is dropped."""
        if self._producer is None or not self.in_transaction:
            return
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            error = _wrap("cannot abort the transaction", exc)
            if error.kind in ("fatal", "fenced"):
                self.drop()
            raise error from exc
        self.in_transaction = False

    def close(self) -> None:
        """Abort what is open and let go of the client."""
        if self._producer is not None and self.in_transaction:
            with contextlib.suppress(KafkaOpError):
                self.abort()
        if self._producer is not None:
            self._producer.flush(self._timeout)
        self.drop()
