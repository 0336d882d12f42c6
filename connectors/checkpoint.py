"""Which source position is safe to save: the last one whose records, and every record before
them, Kafka has acknowledged. Pure; the producer's delivery callbacks feed it."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class AckTracker:
    """Records are added in source order; acknowledgements arrive in any order (one partition's
    acks are ordered, but partitions are not ordered with each other)."""

    def __init__(self) -> None:
        self._pending: deque[tuple[int, Any]] = deque()
        self._acked: set[int] = set()
        self._next = 0
        self._position: Any = None
        self._completed = 0
        self._lock = threading.Lock()
        #: Delivery errors, in the order they came; any error freezes the position.
        self.errors: list[str] = []

    def add(self, position: Any) -> int:
        with self._lock:
            seq = self._next
            self._next += 1
            self._pending.append((seq, position))
            return seq

    def ack(self, seq: int) -> None:
        with self._lock:
            self._acked.add(seq)
            pending, acked = self._pending, self._acked
            while pending and pending[0][0] in acked:
                done, self._position = pending.popleft()
                acked.discard(done)
                self._completed += 1

    def fail(self, seq: int, error: str) -> None:
        with self._lock:
            self.errors.append(error)

    @property
    def position(self) -> Any:
        """The newest position all of whose records (and all before) are acknowledged."""
        return self._position

    def reset(self) -> None:
        """Start a new sequence of positions (e.g. the next file); nothing may be in flight."""
        with self._lock:
            if self._pending:
                raise RuntimeError("cannot reset while records are in flight")
            self._position = None

    @property
    def completed(self) -> int:
        """Records acknowledged together with everything before them."""
        return self._completed

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def sent(self) -> int:
        return self._next
