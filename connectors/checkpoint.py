"""Which source position is safe to save: the last one whose records, and every record before
them, Kafka has acknowledged. The producer's delivery callbacks feed it through :class:`AckGroup`.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: Called once when a group is settled: None when Kafka acknowledged all of it, else the error.
Done = Callable[[str | None], None]


class AckTracker:
    """Positions are added in source order, each with how many records it covers;
    acknowledgements arrive in any order (one partition's acks are ordered, but partitions are not
    ordered with each other)."""

    def __init__(self) -> None:
        self._pending: deque[tuple[int, Any, int]] = deque()
        self._acked: set[int] = set()
        self._next = 0
        self._sent = 0
        self._position: Any = None
        self._newest: Any = None
        self._completed = 0
        self._lock = threading.Lock()
        #: Delivery errors, in the order they came; any error freezes the position.
        self.errors: list[str] = []

    def add(self, position: Any, records: int = 1) -> int:
        """A position reached once ``records`` more records are acknowledged; its sequence
        number, which :meth:`ack` takes."""
        with self._lock:
            seq = self._next
            self._next += 1
            self._sent += records
            self._pending.append((seq, position, records))
            self._newest = position
            return seq

    def ack(self, seq: int) -> None:
        """Every record of position ``seq`` is acknowledged."""
        with self._lock:
            self._acked.add(seq)
            pending, acked = self._pending, self._acked
            while pending and pending[0][0] in acked:
                done, self._position, records = pending.popleft()
                acked.discard(done)
                self._completed += records

    def fail(self, error: str) -> None:
        with self._lock:
            self.errors.append(error)

    @property
    def position(self) -> Any:
        """The newest position all of whose records (and all before) are acknowledged."""
        return self._position

    @property
    def newest(self) -> Any:
        """The newest position added, acknowledged or not (a transaction's commit covers it)."""
        return self._newest

    def reset(self) -> None:
        """Start a new sequence of positions (e.g. the next file); nothing may be in flight."""
        with self._lock:
            if self._pending:
                raise RuntimeError("cannot reset while records are in flight")
            self._position = None
            self._newest = None

    @property
    def completed(self) -> int:
        """Records acknowledged together with everything before them."""
        return self._completed

    @property
    def in_flight(self) -> int:
        """Positions not yet safe to save."""
        return len(self._pending)

    @property
    def sent(self) -> int:
        """Records added."""
        return self._sent


class AckGroup:
    """Records sent under one source position (a batch of a file's rows, one table row, one HTTP
    record) whose acknowledgements are counted together.

    Its bound methods are the records' delivery callbacks, one object for the whole group rather
    than a closure per record. ``size`` must be set before the first callback can run (callbacks
    run inside ``poll`` and ``flush``). Counting uses ``itertools.count``, whose ``next`` is
    atomic, because the HTTP source polls the producer from two threads.
    """

    __slots__ = ("_acked", "_failed", "_left", "_on_done", "_op", "_seq", "_tracker")

    def __init__(
        self,
        tracker: AckTracker,
        position: Any,
        size: int,
        op: str | None,
        acked: list[tuple[str, float]],
        on_done: Done | None = None,
    ) -> None:
        """``position`` None: nothing to save (HTTP records), only ``on_done`` is told.
        ``acked`` gets ``(op, seconds from produce to acknowledgement)`` of each change record."""
        self._tracker = tracker
        self._seq = tracker.add(position, size) if position is not None else -1
        # next() counts down size-1, ..., 0: the record that takes 0 is the group's last.
        self._left = itertools.count(size - 1, -1)
        self._op = op
        self._acked = acked
        self._on_done = on_done
        self._failed = False

    def change(self, err: Any, msg: Any) -> None:
        """Delivery callback of a change record (counted as published, its latency observed)."""
        if err is None:
            # librdkafka's own measure, from produce() to the acknowledgement.
            self._acked.append((self._op or "", msg.latency() or 0.0))
        self._settle(err, msg)

    def other(self, err: Any, msg: Any) -> None:
        """Delivery callback of a tombstone or dead letter."""
        self._settle(err, msg)

    def _settle(self, err: Any, msg: Any) -> None:
        if err is not None:
            error = f"{err.str()} ({err.name()})"
            if self._seq >= 0:
                # It freezes the saved position; a record without one (HTTP) is answered through
                # on_done instead, and its sender resends.
                self._tracker.fail(f"{msg.topic()}: {error}")
            # A failed group never completes, so the position cannot move past it.
            if not self._failed:
                self._failed = True
                if self._on_done is not None:
                    self._on_done(error)
            return
        if next(self._left) == 0 and not self._failed:
            if self._seq >= 0:
                self._tracker.ack(self._seq)
            if self._on_done is not None:
                self._on_done(None)
