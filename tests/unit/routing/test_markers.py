"""A connector's transaction markers: the router commits past them, never past a record."""

from exchange.routing.worker import past_markers


def test_a_partition_routed_to_its_last_record_commits_the_position_past_the_markers() -> None:
    offsets = {("src.a", 0): 11, ("src.a", 1): 5}
    # Partition 0: its batch ended at offset 10, the consumer stands at 12 (a marker at 11).
    # Partition 1: routed only to 5 of a batch that ended at 8: it keeps 5.
    past_markers(offsets, {("src.a", 0): (11, 12), ("src.a", 1): (9, 10)})
    assert offsets == {("src.a", 0): 12, ("src.a", 1): 5}


def test_nothing_changes_without_markers_or_for_partitions_not_routed() -> None:
    offsets = {("src.a", 0): 11}
    past_markers(offsets, {("src.a", 0): (11, 11), ("src.b", 0): (3, 4)})
    assert offsets == {("src.a", 0): 11}
