import random

import pytest

from exchange.routing.backfill import Backfill, Handover, Progress, ProgressError

T = "src.a.b"


def test_progress_round_trip_and_bad_records() -> None:
    progress = Progress("g1", T, 2, 41, True)
    assert Progress.decode(progress.encode()) == progress
    assert progress.key == b"g1|src.a.b|2"
    for bad in (b"{", b"[]", b'{"grant_id": "g"}', Progress("g", T, 0, 0, False).encode()[:-1]):
        with pytest.raises(ProgressError):
            Progress.decode(bad)
    with pytest.raises(ProgressError, match="negative"):
        Progress.decode(b'{"grant_id":"g","topic":"t","partition":0,"next_offset":-1,"done":0}')


def test_new_grant_backfills_then_live_stream_takes_over() -> None:
    handover = Handover()
    (backfill,) = handover.plan(T, 0, ["g"])
    assert backfill.next_offset == 0 and backfill.grants == {"g"}
    # The live stream skips the grant while it is backfilling.
    assert handover.live(T, 0, 5, ["g"]) == set()
    backfill.next_offset = 6
    assert handover.finish(backfill, at_end=True)
    assert handover.live(T, 0, 6, ["g"]) == {"g"}
    assert handover.running() == 0
    assert handover.progress(backfill, done=True) == [Progress("g", T, 0, 6, True)]


def test_no_hand_over_before_the_end_or_behind_the_live_stream() -> None:
    handover = Handover()
    (backfill,) = handover.plan(T, 0, ["g"])
    backfill.next_offset = 3
    assert not handover.finish(backfill, at_end=False)
    handover.live(T, 0, 7, ["g"])  # the live stream skipped offset 7
    assert not handover.finish(backfill, at_end=True)
    backfill.next_offset = 8
    assert handover.finish(backfill, at_end=True)


def test_grants_planned_together_share_one_reader_and_saved_progress_resumes() -> None:
    saved = [Progress("old", T, 0, 10, True), Progress("half", T, 0, 4, False)]
    handover = Handover(saved)
    started = handover.plan(T, 0, ["old", "half", "new1", "new2"])
    assert [(b.next_offset, b.grants) for b in started] == [(0, {"new1", "new2"}), (4, {"half"})]
    assert handover.plan(T, 0, ["old", "half", "new1"]) == []  # nothing started twice
    assert handover.live(T, 0, 9, ["old", "half", "new1"]) == set()
    assert handover.live(T, 0, 10, ["old", "half", "new1"]) == {"old"}


def test_a_grant_gone_inactive_leaves_its_backfill() -> None:
    handover = Handover()
    (backfill,) = handover.plan(T, 0, ["a", "b"])
    handover.keep(backfill, ["b"])
    assert backfill.grants == {"b"} and not backfill.stopped
    handover.keep(backfill, [])
    assert backfill.stopped and handover.running() == 0
    # Active again later: it starts afresh (nothing was saved for it).
    (again,) = handover.plan(T, 0, ["a"])
    assert again.next_offset == 0


def test_released_partition_stops_its_backfill_and_is_resumed_from_what_was_saved() -> None:
    handover = Handover()
    (backfill,) = handover.plan(T, 1, ["g"])
    backfill.next_offset = 50
    handover.saved(Progress("g", T, 1, 40, False))
    handover.live(T, 1, 60, ["g"])
    assert handover.release([(T, 1)]) == [backfill]
    assert backfill.stopped and not handover.finish(backfill, at_end=True)
    (resumed,) = handover.plan(T, 1, ["g"])
    assert resumed.next_offset == 40
    # The live position was forgotten with the partition: the new reader hands over at the end.
    resumed.next_offset = 55
    assert handover.finish(resumed, at_end=True)


@pytest.mark.parametrize("seed", range(300))
def test_every_record_reaches_the_grant_exactly_once_in_order(seed: int) -> None:
    """A backfill and the live stream, interleaved at random over a growing partition."""
    rnd = random.Random(seed)
    log_end = rnd.randint(0, 30)  # records already in the partition
    live_at = rnd.randint(0, log_end)  # the live stream's committed position
    handover = Handover()
    delivered: list[int] = []
    backfill: Backfill | None = None
    chunk: tuple[int, int, bool] | None = None  # read, not yet delivered
    acking: bool | None = None  # delivered, awaiting acknowledgement: was the read at the end?
    for _ in range(20_000):
        step = rnd.random()
        if backfill is None:
            if step < 0.2:
                (backfill,) = handover.plan(T, 0, ["g"])
        elif backfill.stopped and chunk is None and acking is None and live_at == log_end >= 60:
            break
        if step < 0.15 and log_end < 60:
            log_end += rnd.randint(1, 3)  # a connector publishes
        elif step < 0.5 and live_at < log_end:
            # The live stream handles a batch; the router plans backfills before routing.
            if backfill is None:
                (backfill,) = handover.plan(T, 0, ["g"])
            for offset in range(live_at, min(log_end, live_at + rnd.randint(1, 5))):
                if "g" in handover.live(T, 0, offset, ["g"]):
                    delivered.append(offset)
                live_at = offset + 1
        elif backfill is None:
            continue
        elif chunk is None and acking is None and not backfill.stopped:
            end = min(log_end, backfill.next_offset + rnd.randint(1, 8))
            chunk = (backfill.next_offset, end, end == log_end)
        elif chunk is not None:
            # Back from the read (the live stream may have taken over meanwhile).
            start, end, at_end = chunk
            chunk = None
            if not backfill.stopped:
                delivered.extend(range(start, end))
                backfill.next_offset = end
                acking = at_end
        elif acking is not None:
            # Acknowledged: hand over if at the end (or note the live stream took over).
            handover.finish(backfill, acking)
            acking = None
    assert backfill is not None and backfill.handed_over, "no hand-over"
    for offset in range(live_at, log_end):  # drain what the live stream has not handled yet
        if "g" in handover.live(T, 0, offset, ["g"]):
            delivered.append(offset)
    assert delivered == list(range(log_end))


def test_an_unfinished_backfill_resumes_where_its_committed_progress_ended() -> None:
    """What a backfill delivered is committed with its progress (deliveries, per-key state and
    progress in one transaction), so a restarted worker goes on from there."""
    saved = [Progress("old", T, 0, 10, True), Progress("half", T, 0, 4, False)]
    handover = Handover(saved)
    by_start = {b.next_offset: b.grants for b in handover.plan(T, 0, ["old", "half", "new"])}
    assert by_start == {4: {"half"}, 0: {"new"}}


def test_a_backfill_does_not_hand_over_below_where_the_live_stream_resumes() -> None:
    """After an assignment the live stream resumes at its committed offset: a backfill that
    found the partition's end earlier (it read before records arrived) reads on up to it."""
    handover = Handover()
    handover.resume(T, 0, 13)
    (backfill,) = handover.plan(T, 0, ["g"])
    assert not handover.finish(backfill, at_end=True)  # records 0-12 are still to be read
    backfill.next_offset = 13
    assert handover.finish(backfill, at_end=True)
    assert handover.live(T, 0, 13, ["g"]) == {"g"}
