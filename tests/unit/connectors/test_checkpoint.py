from connectors.checkpoint import AckGroup, AckTracker


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


def test_newest_is_the_last_position_added_acknowledged_or_not() -> None:
    # A transaction's commit makes every record sent visible: its position is the newest sent.
    tracker = AckTracker()
    assert tracker.newest is None
    first = tracker.add(10)
    tracker.add(11)
    assert tracker.newest == 11 and tracker.position is None
    tracker.ack(first)
    assert tracker.newest == 11 and tracker.position == 10


def test_a_failure_is_kept_and_freezes_the_position() -> None:
    tracker = AckTracker()
    tracker.add(1)
    b = tracker.add(2)
    tracker.fail("broker down")
    tracker.ack(b)
    assert tracker.position is None
    assert tracker.errors == ["broker down"]


def test_reset_starts_a_new_run_only_when_nothing_is_in_flight() -> None:
    tracker = AckTracker()
    tracker.ack(tracker.add(5))
    tracker.reset()
    assert tracker.position is None and tracker.newest is None
    tracker.add(1)
    try:
        tracker.reset()
    except RuntimeError:
        pass
    else:
        raise AssertionError("reset with records in flight must fail")


class _Msg:
    """The parts of a confluent-kafka Message a delivery callback reads."""

    def __init__(self, latency: float = 0.004) -> None:
        self._latency = latency

    def latency(self) -> float:
        return self._latency

    def topic(self) -> str:
        return "src.x"


class _Err:
    def str(self) -> str:
        return "Broker: Not enough in-sync replicas"

    def name(self) -> str:
        return "NOT_ENOUGH_REPLICAS"


def test_a_group_moves_the_position_once_all_its_records_are_acknowledged() -> None:
    tracker = AckTracker()
    acked: list[tuple[str, float]] = []
    done: list[str | None] = []
    first = AckGroup(tracker, 1000, 3, "r", acked, done.append)
    second = AckGroup(tracker, 2000, 1, "r", acked)
    second.change(None, _Msg())
    first.change(None, _Msg(0.002))
    first.other(None, _Msg())  # a dead letter of the same batch
    assert tracker.position is None and done == []
    first.change(None, _Msg())
    assert tracker.position == 2000 and done == [None]
    assert tracker.sent == 4 and tracker.completed == 4
    # Change records are counted with their latency; dead letters are not.
    assert acked == [("r", 0.004), ("r", 0.002), ("r", 0.004)]


def test_a_failed_record_keeps_its_group_from_ever_completing() -> None:
    tracker = AckTracker()
    done: list[str | None] = []
    group = AckGroup(tracker, 7, 2, "u", [], done.append)
    group.change(_Err(), _Msg())
    group.change(None, _Msg())
    group.change(None, _Msg())  # even a stray extra acknowledgement
    assert tracker.position is None
    assert tracker.errors == ["src.x: Broker: Not enough in-sync replicas (NOT_ENOUGH_REPLICAS)"]
    assert done == ["Broker: Not enough in-sync replicas (NOT_ENOUGH_REPLICAS)"]


def test_a_group_without_a_position_only_reports_done() -> None:
    tracker = AckTracker()
    done: list[str | None] = []
    group = AckGroup(tracker, None, 2, "c", [], done.append)
    group.change(None, _Msg())
    group.change(None, _Msg())
    assert done == [None] and tracker.in_flight == 0 and tracker.position is None


def test_a_failed_record_without_a_position_does_not_freeze_the_saved_one() -> None:
    # An HTTP record: its sender got the error (503) and resends; the connector goes on.
    tracker = AckTracker()
    done: list[str | None] = []
    AckGroup(tracker, None, 1, "u", [], done.append).change(_Err(), _Msg())
    assert tracker.errors == [] and done == [
        "Broker: Not enough in-sync replicas (NOT_ENOUGH_REPLICAS)"
    ]
