"""Every grant, kept current in memory by following ``exchange.grants`` in a thread.

Each router worker needs all grants (its partitions may carry any entry), so the book reads the
topic by assignment, not in the router's consumer group, and only committed writes. It keeps each
grant's terms only (:class:`GrantTerms`): a worker may follow tens of thousands of grants.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.grants.model import Grant, GrantTerms
from exchange.kafka.control import partitions, reader
from exchange.kafka.errors import KafkaOpError

log = logging.getLogger(__name__)


#: Errors after which the book is as current as it can be: the end of a partition, and the
#: broker out of reach (then nobody can change a grant either). Any other error (the topic
#: refused to this principal, say) leaves the book's age growing.
_STILL_CURRENT = frozenset(
    {
        KafkaError._PARTITION_EOF,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
    }
)
#: The same, as the names :class:`KafkaOpError` carries for a failed metadata call.
_BROKER_AWAY = frozenset(
    KafkaError(code).name() for code in _STILL_CURRENT - {KafkaError._PARTITION_EOF}
)
#: Waits before following the topic again after the reader failed: 1, 2, 4 ... 30 s.
RETRY_WAITS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: How often the reader checks that the topic it follows is still there, with its partitions:
#: a deleted topic gives its consumer no error, only silence, which reads as "nothing changed".
TOPIC_CHECK_S = 5.0
#: How long one such check may wait for the broker (a broker away is not a change).
CHECK_TIMEOUT_S = 2.0


class GrantTopicChangedError(ExchangeError):
    """The grants topic the book followed was deleted or its partitions changed."""


class GrantBook:
    """The grants, current as of :meth:`age_s` seconds ago.

    If reading fails (an unexpected error, a record the client cannot handle), the reader logs
    it, waits, and reads the topic again from the start into a fresh table that replaces the
    old one once complete: a grant deleted meanwhile is not kept. While it recovers the book
    is stale, and :meth:`age_s` grows; the router stops routing when it is too stale
    (``router.grant_book_stale_s``), so a revocation is never ignored for long.
    """

    def __init__(self, settings: ExchangeSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._grants: dict[str, GrantTerms] = {}
        #: Bumped on every change, so readers know cheaply whether to look again.
        self.version = 0
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grant-book", daemon=True)
        #: When the reader last went round its loop with the table complete (monotonic).
        self._current_at = time.monotonic()
        #: The last failure of the reader, for the operator: what and when (monotonic).
        self.failure: tuple[str, float] | None = None
        self.failures = 0
        #: The topic was found and followed once: its disappearance is a failure from then on.
        self._followed = False
        self.on_bad_record: Callable[[str, str], None] = lambda where, why: log.warning(
            "ignoring unreadable grant at %s: %s", where, why
        )

    def start(self, timeout: float) -> None:
        """Start following; return once the topic was read to its end (the book is complete)."""
        self._thread.start()
        if not self._caught_up.wait(timeout):
            raise TimeoutError(f"grants topic not read to its end in {timeout:.0f} s")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # a router closed before it started never started it
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        """Still following the topic (the reader thread has not ended)."""
        return self._thread.is_alive() or self._stop.is_set()

    def age_s(self) -> float:
        """Seconds since the book was last known complete and following the topic: about 0.5
        while it follows (it polls twice a second, also through a broker outage, when nobody
        can change a grant either); growing while it recovers, or if its thread has ended."""
        return time.monotonic() - self._current_at

    def snapshot(self) -> tuple[int, dict[str, GrantTerms]]:
        with self._lock:
            return self.version, dict(self._grants)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                # Returns when stopped, or when a topic missing at the start appeared.
                self._follow(fresh=attempt > 0)
            except Exception as exc:  # the thread must report and recover, not die silently
                wait = RETRY_WAITS_S[min(attempt, len(RETRY_WAITS_S) - 1)]
                self.failures += 1
                self.failure = (f"{type(exc).__name__}: {exc}", time.monotonic())
                log.error(
                    "the grant book stopped following %s (%s); reading it again from the "
                    "start in %.0f s",
                    self._settings.topics.grants,
                    exc,
                    wait,
                    exc_info=exc,
                )
                attempt += 1
                self._stop.wait(wait)

    def _follow(self, fresh: bool) -> None:
        """Read the topic from its start and follow it until stopped.

        ``fresh``: after a failure, read into a new table and swap it in once complete.
        """
        topic = self._settings.topics.grants
        consumer = reader(self._settings.kafka, committed=True)
        try:
            timeout = self._settings.kafka.request_timeout_s
            numbers = partitions(consumer, topic, timeout)
            if not numbers:
                if self._followed:
                    raise GrantTopicChangedError(
                        f"grants topic {topic} does not exist any more", code="GRANTS_TOPIC_GONE"
                    )
                log.error("grants topic %s does not exist: no grants, nothing delivered", topic)
                self._caught_up.set()
                self._idle(consumer, topic)
                return
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in numbers])
            self._followed = True
            table: dict[str, GrantTerms] = {} if fresh else self._grants
            at_end: set[int] = set()
            complete = False
            check_at = time.monotonic() + TOPIC_CHECK_S
            while not self._stop.is_set():
                if time.monotonic() >= check_at:
                    check_at = time.monotonic() + TOPIC_CHECK_S
                    # Briefly: the book does not count as current while this call waits.
                    now = _partitions_now(consumer, topic, CHECK_TIMEOUT_S)
                    if now is not None:
                        _still_there(topic, numbers, now)
                msg = consumer.poll(0.5)
                err = None if msg is None else msg.error()
                if complete and (err is None or err.code() in _STILL_CURRENT):
                    self._current_at = time.monotonic()
                if msg is None:
                    continue
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(int(msg.partition() or 0))
                        if not complete and at_end >= set(numbers):
                            complete = True
                            self._complete(table, fresh)
                    else:
                        # Not current: e.g. the grants topic refused (ACLs changed) is a book
                        # that no longer hears of revocations; its age grows until it reads.
                        log.warning("reading %s: %s", topic, err.str())
                    continue
                where = f"{topic}/{msg.partition()}/{msg.offset()}"
                self._apply(table, msg.key(), msg.value(), where)
        finally:
            consumer.close()

    def _complete(self, table: dict[str, GrantTerms], fresh: bool) -> None:
        """The topic was read to its end: ``table`` is the book from now on."""
        if fresh:
            with self._lock:
                self._grants = table
                self.version += 1
            log.warning(
                "the grant book follows %s again (%d grants)",
                self._settings.topics.grants,
                len(table),
            )
        self._current_at = time.monotonic()
        self._caught_up.set()

    def _idle(self, consumer: Consumer, topic: str) -> None:
        """No topic: nothing can change a grant until it exists (``catalog apply`` makes it);
        returns once it does, to be followed."""
        check_at = time.monotonic() + TOPIC_CHECK_S
        while not self._stop.wait(0.5):
            self._current_at = time.monotonic()
            if time.monotonic() >= check_at:
                check_at = time.monotonic() + TOPIC_CHECK_S
                if _partitions_now(consumer, topic, CHECK_TIMEOUT_S):
                    log.warning("grants topic %s exists now: following it", topic)
                    return

    def _apply(
        self, table: dict[str, GrantTerms], key: bytes | None, value: bytes | None, where: str
    ) -> None:
        grant_id = (key or b"").decode("utf-8", "replace")
        grant: GrantTerms | None = None
        if value is not None:
            try:
                grant = Grant.decode(value).terms()
            except ValidationError as exc:
                self.on_bad_record(where, str(exc))
                return
        with self._lock:
            if grant is None:
                table.pop(grant_id, None)
            else:
                table[grant_id] = grant
            if table is self._grants:
                self.version += 1


def _still_there(topic: str, followed: list[int], now: list[int]) -> None:
    """Raise if the followed topic was deleted or its partitions changed (then the book must
    read it again from the start, and is stale until it has)."""
    if not now:
        raise GrantTopicChangedError(f"grants topic {topic} was deleted", code="GRANTS_TOPIC_GONE")
    if sorted(now) != sorted(followed):
        raise GrantTopicChangedError(
            f"grants topic {topic} has {len(now)} partitions now, {len(followed)} before",
            code="GRANTS_TOPIC_CHANGED",
        )


def _partitions_now(consumer: Consumer, topic: str, timeout: float) -> list[int] | None:
    """The topic's partitions now; ``None`` while the broker is out of reach (then nobody can
    change a grant either, and the book stays as current as it can be)."""
    try:
        return partitions(consumer, topic, timeout)
    except KafkaOpError as exc:
        if exc.code in _BROKER_AWAY:
            return None
        raise
