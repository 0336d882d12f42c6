"""Every grant, kept current in memory by following ``exchange.grants`` in a thread.

Each router worker needs all grants (its partitions may carry any entry), so the book reads the
topic by assignment, not in the router's consumer group, and only committed writes. It keeps each
grant's terms only (:class:`GrantTerms`): a worker may follow tens of thousands of grants.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from pydantic import ValidationError

from exchange.config import ExchangeSettings
from exchange.grants.model import Grant, GrantTerms
from exchange.kafka.control import partitions, reader

log = logging.getLogger(__name__)


class GrantBook:
    def __init__(self, settings: ExchangeSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._grants: dict[str, GrantTerms] = {}
        #: Bumped on every change, so readers know cheaply whether to look again.
        self.version = 0
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grant-book", daemon=True)
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
        """Still following the topic (the reader thread has not stopped on an error)."""
        return self._thread.is_alive() or self._stop.is_set()

    def snapshot(self) -> tuple[int, dict[str, GrantTerms]]:
        with self._lock:
            return self.version, dict(self._grants)

    def _run(self) -> None:
        topic = self._settings.topics.grants
        consumer = reader(self._settings.kafka, committed=True)
        try:
            numbers = partitions(consumer, topic, self._settings.kafka.request_timeout_s)
            if not numbers:
                log.error("grants topic %s does not exist: no grants, nothing delivered", topic)
                self._caught_up.set()
                return
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in numbers])
            at_end: set[int] = set()
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(int(msg.partition() or 0))
                        if at_end >= set(numbers):
                            self._caught_up.set()
                    else:
                        log.warning("reading %s: %s", topic, err.str())
                    continue
                self._apply(msg.key(), msg.value(), f"{topic}/{msg.partition()}/{msg.offset()}")
        except Exception:  # the thread must report, not die silently
            log.exception("grant book stopped following %s", topic)
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None, where: str) -> None:
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
                self._grants.pop(grant_id, None)
            else:
                self._grants[grant_id] = grant
            self.version += 1
