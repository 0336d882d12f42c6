"""Compacted topics followed in a thread, each as a table of key -> decoded value.

For services that answer from the platform's control topics without keeping state of their own
(the portal): every replica follows the same topics, so any replica answers any request.
Committed writes only (writers write in transactions, with their audit events). A replica sees
its own writes at once (:meth:`Tables.put` after the commit) and another replica's once it has
read them: :meth:`Tables.sync` waits until everything committed before the call is read, for a
lookup that must not miss a write made elsewhere a moment ago (a session made at login).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from exchange.config.settings import KafkaSettings
from exchange.errors import ExchangeError
from exchange.kafka.control import partitions, reader, watermarks

__all__ = ["Decoder", "Tables", "TablesError"]

log = logging.getLogger(__name__)

#: Turns a record's value into what the table keeps; raises ``ValueError`` for a bad record.
Decoder = Callable[[bytes], Any]
#: Waits before following again after the reader failed: 1, 2, 4 ... 30 s.
RETRY_WAITS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


class TablesError(ExchangeError):
    """The followed topics cannot be read (missing, refused)."""


class Tables:
    """Follows ``decoders``' topics (topic -> decoder) from their start, in one thread."""

    def __init__(self, settings: KafkaSettings, decoders: Mapping[str, Decoder], name: str) -> None:
        self._settings = settings
        self._decoders = dict(decoders)
        self._name = name
        self._lock = threading.Condition()
        self._tables: dict[str, dict[str, Any]] = {t: {} for t in decoders}
        #: Per partition, the offset after the last record read (or where its end was seen).
        self._read: dict[tuple[str, int], int] = {}
        #: Records that could not be decoded: where -> why (set aside, never served).
        self.unreadable: dict[str, str] = {}
        #: Bumped on every change, so a reader can cache what it derived from a table.
        self.version = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"tables-{name}", daemon=True)
        self._probe_lock = threading.Lock()
        self._probe: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float) -> None:
        """Start following; return once every topic was read to its end."""
        self._thread.start()
        if not self._ready.wait(timeout):
            why = f": {self._failure}" if self._failure else ""
            raise TablesError(
                f"{self._name}: {', '.join(self._decoders)} not read to their end in "
                f"{timeout:.0f} s{why}",
                code="TABLES_NOT_READY",
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        if self._probe is not None:
            self._probe.close()

    # -- reading -----------------------------------------------------------------------------

    def get(self, topic: str, key: str) -> Any | None:
        with self._lock:
            return self._tables[topic].get(key)

    def items(self, topic: str) -> dict[str, Any]:
        """A copy of the topic's table."""
        with self._lock:
            return dict(self._tables[topic])

    def put(self, topic: str, key: str, value: Any | None) -> None:
        """This process committed ``value`` (``None``: a tombstone): serve it now, before the
        follower reads it back."""
        with self._lock:
            if value is None:
                self._tables[topic].pop(key, None)
            else:
                self._tables[topic][key] = value
            self.version += 1

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until everything committed to the topics before this call has been read;
        ``False`` if that took longer than ``timeout``."""
        wanted = self._ends(timeout)
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(self._read.get(tp, 0) < end for tp, end in wanted.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def _ends(self, timeout: float) -> dict[tuple[str, int], int]:
        """Each partition's last stable offset now."""
        with self._probe_lock:
            if self._probe is None:
                self._probe = reader(self._settings, committed=True)
            with self._lock:
                tps = list(self._read)
            return {tp: watermarks(self._probe, *tp, timeout)[1] for tp in tps}

    # -- the follower thread -----------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # the thread must report and recover, not die silently
                self._failure = exc
                wait = RETRY_WAITS_S[min(attempt, len(RETRY_WAITS_S) - 1)]
                log.error("%s: following stopped (%s); again in %.0f s", self._name, exc, wait)
                attempt += 1
                self._stop.wait(wait)

    def _follow(self) -> None:
        consumer = reader(self._settings, committed=True)
        try:
            timeout = self._settings.request_timeout_s
            tps = []
            for topic in self._decoders:
                numbers = partitions(consumer, topic, timeout)
                if not numbers:
                    raise TablesError(
                        f"topic {topic} does not exist (`exchange catalog apply` makes it)",
                        code="NO_TOPIC",
                    )
                tps += [(topic, p) for p in numbers]
            # After a failure: read into new tables, served once complete (a record deleted
            # meanwhile is not kept).
            fresh: dict[str, dict[str, Any]] = self._tables
            if self._ready.is_set():
                fresh = {t: {} for t in self._decoders}
            at_end: set[tuple[str, int]] = set()
            complete = False
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in tps])
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                tp = (str(msg.topic()), int(msg.partition() or 0))
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s: reading %s: %s", self._name, tp[0], err.str())
                        continue
                    with self._lock:
                        self._read[tp] = max(self._read.get(tp, 0), int(msg.offset() or 0))
                        self._lock.notify_all()
                    at_end.add(tp)
                    if not complete and at_end >= set(tps):
                        complete = True
                        self._complete(fresh)
                    continue
                self._apply(fresh, tp, msg)
        finally:
            consumer.close()

    def _complete(self, fresh: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            self._tables = fresh
            self.version += 1
        self._failure = None
        self._ready.set()

    def _apply(self, tables: dict[str, dict[str, Any]], tp: tuple[str, int], msg: Any) -> None:
        topic = tp[0]
        key = (msg.key() or b"").decode("utf-8", errors="replace")
        value = msg.value()
        where = f"{topic}/{tp[1]}/{msg.offset()}"
        decoded = None
        if value is not None:
            try:
                decoded = self._decoders[topic](value)
            except ValueError as exc:
                self.unreadable[where] = str(exc)
                log.warning("%s: record %s set aside: %s", self._name, where, exc)
        with self._lock:
            if decoded is None:
                tables[topic].pop(key, None)
            else:
                tables[topic][key] = decoded
            self._read[tp] = int(msg.offset() or 0) + 1
            self.version += 1
            self._lock.notify_all()
