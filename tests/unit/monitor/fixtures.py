"""Factories for the monitor's tests."""

import datetime as dt

from exchange.monitor.figures import (
    AuditFigures,
    DeliveryFigures,
    GrantFigures,
    Snapshot,
    SourceFigures,
)
from tests.unit.grants.fixtures import T0


def snapshot(delivered: int) -> Snapshot:
    return Snapshot(
        taken_at=T0,
        router_workers=2,
        sources=[SourceFigures("gongan.p", "gongan", "src.gongan.p", 35, 4)],
        deliveries=[DeliveryFigures("mzj", "gongan.p", "dlv.mzj.gongan.p", delivered)],
        lags=[],
        grants=[GrantFigures("g1", "mzj", "gongan.p", "active", T0 + dt.timedelta(days=3))],
        dlq={("connector", "citizen_id", "gongan.p"): 2, ("router", "schema", "gongan.p"): 1},
        audit=AuditFigures(9, {"delivery.receipt": 9}, {"router.a": None, "cli.x": "changed"}, 0),
    )
