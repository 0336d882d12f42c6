from connectors.checkpoint import AckTracker


def test_position_moves_only_past_contiguous_acknowledgements() -> None:
    tracker = AckTracker()
    seqs = [tracker.add(row) for row in (10, 11, 12, 13)]
    assert tracker.position is None
    tracker.ack(seqs[1])
    tracker.ack(seqs[3])
    assert tracker.position is None  # row 10 not acknowledged: nothing is safe
    tracker.ack(seqs[0])
    assert tracker.position == 11
    assert tracker.in_flight == 2 and tracker.completed == 2
    tracker.ack(seqs[2])
    assert tracker.position == 13 and tracker.in_flight == 0


def test_a_failure_is_kept_and_freezes_the_position() -> None:
    tracker = AckTracker()
    a, b = tracker.add(1), tracker.add(2)
    tracker.fail(a, "broker down")
    tracker.ack(b)
    assert tracker.position is None
    assert tracker.errors == ["broker down"]


def test_reset_starts_a_new_run_only_when_nothing_is_in_flight() -> None:
    tracker = AckTracker()
    tracker.ack(tracker.add(5))
    tracker.reset()
    assert tracker.position is None
    tracker.add(1)
    try:
        tracker.reset()
    except RuntimeError:
        pass
    else:
        raise AssertionError("reset with records in flight must fail")
