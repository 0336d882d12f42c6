"""The quality worker gives way to a busy router, not to a stopped one, and not for ever."""

from __future__ import annotations

import time
from typing import Any, cast

from exchange.kafka.admin import Admin
from exchange.quality.worker import RouterYield

TPS = [("src.e", 0), ("src.e", 1)]


class FakeAdmin:
    """End offsets and the router group's commits, as the test sets them."""

    def __init__(self) -> None:
        self.ends = {tp: 0 for tp in TPS}
        self.committed = {tp: 0 for tp in TPS}
        self.members = 0

    def end_offsets(self, partitions: Any) -> dict[tuple[str, int], int]:
        return dict(self.ends)

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        return dict(self.committed)

    def group_members(self, group: str) -> int:
        return self.members


def _yield(admin: FakeAdmin, max_s: float = 300.0) -> RouterYield:
    y = RouterYield(cast(Admin, admin), "exchange-router", 1000, max_s)
    y.watch(TPS)
    return y


def test_waits_while_the_router_works_through_a_backlog() -> None:
    admin = FakeAdmin()
    y = _yield(admin)
    assert not y.busy()
    admin.ends = {tp: 50_000 for tp in TPS}
    admin.committed = {tp: 2_000 for tp in TPS}
    assert y.busy()  # behind and moving
    admin.committed = {tp: 4_000 for tp in TPS}
    assert y.busy()
    # Between two checkpoints (offsets not moved a moment): still busy.
    assert y.busy()
    # Stopped (not moving for longer than a checkpoint's interval, no member): nothing to give
    # way to.
    y.MOVED_S = 0.05
    time.sleep(0.06)
    assert not y.busy()
    # A router that joined but has not committed yet (starting on a backlog) is waited for.
    admin.members = 1
    assert y.busy()
    admin.members = 0
    # Caught up: the small lag of live traffic is not a backlog.
    admin.committed = {tp: 49_900 for tp in TPS}
    assert not y.busy()


def test_a_new_group_is_behind_by_everything() -> None:
    admin = FakeAdmin()
    admin.ends = {tp: 5_000 for tp in TPS}
    admin.committed = {}
    admin.members = 1
    assert _yield(admin).busy()


def test_never_for_longer_than_max() -> None:
    admin = FakeAdmin()
    y = _yield(admin, max_s=0.05)
    admin.ends = {tp: 10**6 for tp in TPS}
    for step in range(1, 4):
        admin.committed = {tp: 1000 * step for tp in TPS}
        busy = y.busy()
        if step == 1:
            assert busy
    time.sleep(0.06)
    admin.committed = {tp: 9000 for tp in TPS}
    assert not y.busy()


def test_without_a_threshold_it_never_waits() -> None:
    y = RouterYield(cast(Admin, FakeAdmin()), "g", 0, 300.0)
    y.watch(TPS)
    assert not y.busy()
