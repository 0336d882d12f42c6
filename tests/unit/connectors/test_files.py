"""The file source's batching, with a stand-in for the publisher (Kafka is covered by the
integration tests)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from connectors.config import ConnectorConfig
from connectors.sources.files import FileDropSource, Report
from connectors.sources.tabular import scan
from tests.unit.connectors.test_encoding import ENCODER
from tests.unit.connectors.test_records import COLUMNS, GOOD


class _Counter:
    def inc(self, n: int = 1) -> None:
        pass


class _Metrics:
    rows_read = _Counter()


class _Publisher:
    """Records what the source hands over: (marker, records, dead letters) per batch."""

    def __init__(self) -> None:
        self.encoder = ENCODER
        self.mapper = ENCODER.mapper
        self.metrics = _Metrics()
        self.batches: list[tuple[Any, int, int]] = []

    def send_batch(self, op: str, keys: Any, values: Any, rejected: Any, marker: Any) -> None:
        self.batches.append((marker, len(values), len(rejected)))

    def checkpoint(self) -> None:
        pass


def test_batches_before_the_resume_point_move_no_position(tmp_path: Path) -> None:
    header = ",".join(COLUMNS.values())
    line = ",".join(GOOD[c] for c in COLUMNS.values())
    path = tmp_path / "p.csv"
    path.write_text(header + "\n" + (line + "\n") * 2500, encoding="utf-8")
    config = ConnectorConfig.model_validate(
        {
            "id": "c1",
            "department": "gongan",
            "system": "s",
            "entry": ENCODER.entry.id,
            "source": {"type": "file", "folder": str(tmp_path)},
            "fields": COLUMNS,
        }
    )
    publisher = _Publisher()
    source = FileDropSource(config)
    keys, last = source._publish_rows(
        path,
        scan(path, "auto"),
        publisher,
        Report("p.csv"),
        1500,
        threading.Event(),  # type: ignore[arg-type]
    )
    assert last == 2501 and keys is not None
    # Rows 2-1001 were all published before: no marker, or the saved position would go back
    # to row 1001 from 1500. Rows 1002-2001 hold 501 fresh ones (1501-2001); 2002-2501 all fresh.
    assert publisher.batches == [(None, 0, 0), (2001, 501, 0), (2501, 500, 0)]
