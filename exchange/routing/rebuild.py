"""Per-key state built from the source before a partition's backfills run.

A source partition whose state changelog holds no settled-offset record has never been
checkpointed with per-key state. Two cases:

- The router's group has committed an offset in it above the log start: it was routed without
  per-key state (an exchange upgraded from before per-key state, or its changelog deleted by
  hand). Starting from that offset with an empty state would pass over every key whose last
  change lies below it: its delete would reach no grant, and a backfill would not know its
  current version (it gave history, or nothing for those keys).
- The group never routed it, but it holds records (the router's first start after connectors
  published): a backfill beside the live stream, with nothing settled, gave the partition's
  history (every version, deleted rows and their deletes) rather than its current rows.

Either way the live stream reads the partition from its log start, building the state, while
no grant is handed over there yet (every grant generation starts in a backfill, and the backfills
wait); below the offset the group had committed it reports no rejection again (they were set
aside when first routed). The state is committed with the checkpoints like any other; once a
checkpoint passes the partition's last record as it was at the start, the partition is settled
and its backfills give each live key once, at its current version.

:func:`plan_rebuild` decides, :class:`Rebuilds` keeps the bookkeeping; both pure and
unit-tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Rebuild", "Rebuilds", "plan_rebuild"]

TP = tuple[str, int]


def plan_rebuild(
    settled: int | None, committed: int | None, log_start: int, stable_end: int
) -> tuple[int, int] | None:
    """``(bound, reported)`` for a partition whose state must be built before its backfills
    run, or ``None``.

    ``settled``: the changelog's settled offset (``None``: never checkpointed); ``committed``:
    the group's committed offset (``None``: none); ``stable_end``: the partition's last stable
    offset. The state is built from the log start up to the last record below ``bound``;
    rejections below ``reported`` were reported before."""
    if settled is not None:
        return None
    routed = committed if committed is not None and committed > log_start else None
    bound = routed if routed is not None else stable_end
    if bound <= log_start:
        return None
    return bound, routed or 0


@dataclass
class Rebuild:
    """One partition whose state the live stream builds from its log start."""

    #: The offset after the partition's last record below the bound: once a checkpoint
    #: commits this far, the state is settled.
    until: int
    #: Where a rewind reads again from: the log start, then each committed checkpoint.
    restart_at: int
    #: Below it, records were routed (and their rejections reported) before.
    reported: int = 0


class Rebuilds:
    """The partitions whose per-key state the live stream is rebuilding."""

    def __init__(self) -> None:
        self._running: dict[TP, Rebuild] = {}

    def start(self, tp: TP, rebuild: Rebuild) -> None:
        self._running[tp] = rebuild

    def committed(self, tp: TP, offset: int) -> bool:
        """A checkpoint committed the partition up to ``offset``; ``True`` when its state is
        settled there (not rebuilding, or the rebuild is done)."""
        rebuild = self._running.get(tp)
        if rebuild is None:
            return True
        rebuild.restart_at = max(rebuild.restart_at, offset)
        if offset < rebuild.until:
            return False
        del self._running[tp]
        return True

    def drop(self, tps: Iterable[TP]) -> None:
        """The partitions went elsewhere (their next owner decides again)."""
        for tp in tps:
            self._running.pop(tp, None)

    def positions(self) -> dict[TP, int]:
        """Where each rebuilding partition is read again from after a rewind: the group's
        committed offset there is the old router's until the first checkpoint."""
        return {tp: r.restart_at for tp, r in self._running.items()}

    def reported(self) -> Mapping[TP, int]:
        """Per rebuilding partition, the offset below which records were routed before (their
        rejections are not reported again)."""
        return {tp: r.reported for tp, r in self._running.items() if r.reported}

    def bounds(self) -> Mapping[TP, int]:
        """Per rebuilding partition, where its state will be settled (``Rebuild.until``)."""
        return {tp: r.until for tp, r in self._running.items()}

    def until(self, tp: TP) -> int | None:
        rebuild = self._running.get(tp)
        return None if rebuild is None else rebuild.until

    def __contains__(self, tp: object) -> bool:
        return tp in self._running

    def __len__(self) -> int:
        return len(self._running)
