"""When a partition's per-key state is rebuilt from the source, and how far (rebuild.py)."""

from __future__ import annotations

from exchange.routing.rebuild import Rebuild, Rebuilds, plan_rebuild

TP = ("src.a.b", 0)


def test_a_partition_routed_without_state_is_built_up_to_where_the_group_stood() -> None:
    assert plan_rebuild(None, 500, 0, 900) == (500, 500)
    assert plan_rebuild(None, 500, 120, 900) == (500, 500)
    # Checkpointed: its changelog knows.
    assert plan_rebuild(400, 500, 0, 900) is None
    assert plan_rebuild(0, None, 0, 900) is None


def test_a_partition_never_routed_is_built_up_to_its_stable_end_reporting_everything() -> None:
    assert plan_rebuild(None, None, 0, 900) == (900, 0)
    assert plan_rebuild(None, 0, 0, 900) == (900, 0)
    # The group's offset is below the log start: nothing routed is left in the log.
    assert plan_rebuild(None, 100, 120, 900) == (900, 0)
    # Nothing in the log: nothing to build.
    assert plan_rebuild(None, None, 0, 0) is None
    assert plan_rebuild(None, 120, 120, 120) is None


def test_the_partition_settles_once_a_checkpoint_reaches_the_old_offset() -> None:
    rebuilds = Rebuilds()
    rebuilds.start(TP, Rebuild(until=500, restart_at=10, reported=480))
    assert TP in rebuilds and rebuilds.until(TP) == 500
    assert rebuilds.positions() == {TP: 10}
    assert rebuilds.reported() == {TP: 480}
    assert rebuilds.bounds() == {TP: 500}
    assert not rebuilds.committed(TP, 200)
    # A rewind now reads again from the last checkpoint, not from the old router's offset.
    assert rebuilds.positions() == {TP: 200}
    assert rebuilds.committed(TP, 501)
    assert TP not in rebuilds and rebuilds.positions() == {} and rebuilds.reported() == {}
    assert rebuilds.committed(("src.a.b", 1), 3)  # never rebuilt: settled at once


def test_a_partition_given_up_is_forgotten() -> None:
    rebuilds = Rebuilds()
    rebuilds.start(TP, Rebuild(until=50, restart_at=0))
    assert rebuilds.reported() == {}  # nothing was routed before
    rebuilds.drop([TP, ("other", 2)])
    assert len(rebuilds) == 0
