"""Backfill: a newly active grant's consumer gets the entry's current state, then the live stream.

On each source partition a grant starts with a backfill: a reader of the partition from its start
that delivers to that grant alone, while the live stream skips the grant there. Once the backfill
has reached the end of the partition and the live stream has not gone past that point, it hands
over: from that offset on the live stream delivers to the grant, and below it the live stream
skips the grant (a replay after a restart). Backfill and live stream share one event loop and the
hand-over is decided between awaits, so each record reaches the grant once. With per-key state
the backfill's grants hold their keys in the partition's state, beside the live stream's grants.

Progress is saved in a compacted topic (:class:`Progress`) in the transaction of the chunk it
covers (with the chunk's deliveries and state changes), so a restarted router resumes a backfill
where its last committed chunk ended and never backfills a grant twice.

:class:`Handover` decides; it does no I/O, so the interleavings are unit-tested without Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TP = tuple[str, int]


class ProgressError(ValueError):
    """A saved progress record cannot be read."""


@dataclass(frozen=True)
class Progress:
    """Saved state of one grant generation on one source partition."""

    #: The grant's routing key (``ActiveGrant.key``: id and generation), so a grant whose
    #: terms changed is backfilled again.
    grant_id: str
    topic: str
    partition: int
    #: Every record below this offset was delivered to the grant by its backfill.
    next_offset: int
    #: Handed over: the live stream delivers from ``next_offset`` on.
    done: bool

    @property
    def key(self) -> bytes:
        return f"{self.grant_id}|{self.topic}|{self.partition}".encode()

    def encode(self) -> bytes:
        return json.dumps(
            {
                "grant_id": self.grant_id,
                "topic": self.topic,
                "partition": self.partition,
                "next_offset": self.next_offset,
                "done": self.done,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, value: bytes) -> Progress:
        try:
            data: Any = json.loads(value)
            progress = cls(
                str(data["grant_id"]),
                str(data["topic"]),
                int(data["partition"]),
                int(data["next_offset"]),
                bool(data["done"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProgressError(f"not a backfill progress record: {exc}") from exc
        if progress.partition < 0 or progress.next_offset < 0:
            raise ProgressError("partition and next_offset must not be negative")
        return progress


@dataclass(eq=False)
class Backfill:
    """One reader of a source partition delivering to the grants it backfills."""

    topic: str
    partition: int
    grants: set[str]
    #: Where reading continues; everything below was delivered to ``grants``.
    next_offset: int
    #: Set when the reader must stop: handed over, partition taken away, or no grant left.
    stopped: bool = field(default=False)
    #: The live stream delivers from ``next_offset`` on (the reader saves that and stops).
    handed_over: bool = field(default=False)
    #: Where the reader last reached the partition's end (``None``: not yet).
    end_at: int | None = field(default=None)


class Handover:
    """Who delivers a record to a grant: its backfill or the live stream. One per router worker."""

    def __init__(self, saved: Iterable[Progress] = ()) -> None:
        self._saved: dict[tuple[str, str, int], Progress] = {}
        #: Handed over: per partition, the offset from which the live stream delivers to a grant.
        self._live_from: dict[TP, dict[str, int]] = {}
        #: Backfilling: per partition, each grant's running backfill.
        self._running: dict[TP, dict[str, Backfill]] = {}
        #: Per partition, the offset after the last record the live stream handled.
        self._live_next: dict[TP, int] = {}
        for progress in saved:
            self.saved(progress)

    def saved(self, progress: Progress) -> None:
        """``progress`` is safely in Kafka."""
        self._saved[(progress.grant_id, progress.topic, progress.partition)] = progress
        if progress.done:
            tp = (progress.topic, progress.partition)
            self._live_from.setdefault(tp, {})[progress.grant_id] = progress.next_offset

    def resume(self, topic: str, partition: int, offset: int) -> None:
        """The live stream resumes the partition at ``offset`` (its committed offset, after an
        assignment or a rewind): a backfill hands over at the end only if that is not below it.
        Without it the position was unknown until the live stream routed something, and a
        backfill of a partition the live stream had already passed handed over below it."""
        tp = (topic, partition)
        self._live_next[tp] = max(self._live_next.get(tp, 0), offset)

    def plan(self, topic: str, partition: int, grant_ids: Iterable[str]) -> list[Backfill]:
        """Backfills to start so that each of ``grant_ids`` is backfilling or handed over."""
        tp = (topic, partition)
        live_from = self._live_from.get(tp, {})
        running = self._running.setdefault(tp, {})
        by_start: dict[int, set[str]] = {}
        for grant_id in grant_ids:
            if grant_id in live_from or grant_id in running:
                continue
            saved = self._saved.get((grant_id, topic, partition))
            start = saved.next_offset if saved is not None else 0
            by_start.setdefault(start, set()).add(grant_id)
        started = []
        for start, grants in sorted(by_start.items()):
            backfill = Backfill(topic, partition, grants, start)
            for grant_id in grants:
                running[grant_id] = backfill
            started.append(backfill)
        return started

    def live(self, topic: str, partition: int, offset: int, grant_ids: Iterable[str]) -> set[str]:
        """The grants the live stream delivers this record to; notes how far the stream got."""
        return set(self.live_span(topic, partition, offset, offset, grant_ids))

    def live_span(
        self, topic: str, partition: int, first: int, last: int, grant_ids: Iterable[str]
    ) -> dict[str, int]:
        """For the live stream's records ``first`` to ``last`` of a partition: per grant, the
        offset from which it delivers them to that grant (grants it delivers none of them to
        are left out); notes how far the stream got.

        A backfill that has delivered everything the live stream skipped, and nothing from its
        ``next_offset`` on, is taken over here when that offset is in the span: under a steady
        stream the reader may never find the live stream behind it at the end of the
        partition, but the live stream finds it. The same as asking record by record.
        """
        tp = (topic, partition)
        # Unknown after a (re)start: then only a backfill within the span is taken over, since
        # records below it were skipped by the stream before the restart.
        before = self._live_next.get(tp, first)
        if before < last + 1:
            self._live_next[tp] = last + 1
        running = self._running.get(tp)
        if running:
            for backfill in set(running.values()):
                if before <= backfill.next_offset <= last:
                    self._hand_over(backfill)
        live_from = self._live_from.get(tp)
        if not live_from:
            return {}
        # A grant neither handed over nor known is skipped: `plan` starts its backfill, which
        # covers these records too.
        return {
            g: start for g in grant_ids if (start := live_from.get(g)) is not None and start <= last
        }

    def keep(self, backfill: Backfill, active: Iterable[str]) -> None:
        """Only ``active`` grants stay in ``backfill``; it stops when none is left."""
        gone = backfill.grants - set(active)
        running = self._running.get((backfill.topic, backfill.partition), {})
        for grant_id in gone:
            if running.get(grant_id) is backfill:
                del running[grant_id]
        backfill.grants -= gone
        if not backfill.grants:
            backfill.stopped = True

    def finish(self, backfill: Backfill, at_end: bool) -> bool:
        """Hand over if the backfill read the whole partition and the live stream is not past it.

        ``at_end`` says the backfill's last read reached the partition's end; records may have
        arrived since, but any the live stream already skipped lie below ``_live_next``, so a
        live stream beyond ``next_offset`` means reading on.
        """
        if backfill.handed_over:
            return True
        if backfill.stopped or not at_end:
            return False
        tp = (backfill.topic, backfill.partition)
        if self._live_next.get(tp, 0) > backfill.next_offset:
            return False
        self._hand_over(backfill)
        return True

    def _hand_over(self, backfill: Backfill) -> None:
        tp = (backfill.topic, backfill.partition)
        running = self._running.get(tp, {})
        live_from = self._live_from.setdefault(tp, {})
        for grant_id in backfill.grants:
            if running.get(grant_id) is backfill:
                del running[grant_id]
            live_from[grant_id] = backfill.next_offset
        backfill.stopped = backfill.handed_over = True

    def progress(self, backfill: Backfill, done: bool) -> list[Progress]:
        return [
            Progress(g, backfill.topic, backfill.partition, backfill.next_offset, done)
            for g in sorted(backfill.grants)
        ]

    def release(self, partitions: Iterable[TP]) -> list[Backfill]:
        """The partitions went to another worker: stop their backfills, forget the live position.

        Returns the stopped backfills. The new owner resumes them from their saved progress.
        """
        stopped: list[Backfill] = []
        for tp in partitions:
            self._live_next.pop(tp, None)
            for backfill in self._running.pop(tp, {}).values():
                if not backfill.stopped:
                    backfill.stopped = True
                    stopped.append(backfill)
        return stopped

    def committed(self) -> list[Progress]:
        """The progress known to be safely in Kafka (what a new handover starts from)."""
        return list(self._saved.values())

    def partitions(self) -> set[TP]:
        """Partitions with a backfill running."""
        return {tp for tp, running in self._running.items() if running}

    def running(self) -> int:
        return len({id(b) for grants in self._running.values() for b in grants.values()})
