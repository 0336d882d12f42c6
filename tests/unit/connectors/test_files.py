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

    def checkpoint(self, *, force: bool = False) -> None:
        pass

    def begin(self, state_for: Any) -> None:
        pass

    def settle(self) -> None:
        pass


LINE = ",".join(GOOD[c] for c in COLUMNS.values())


def _export(folder: Path, rows: int) -> tuple[Path, FileDropSource]:
    path = folder / "p.csv"
    path.write_text(",".join(COLUMNS.values()) + "\n" + (LINE + "\n") * rows, encoding="utf-8")
    config = ConnectorConfig.model_validate(
        {
            "id": "c1",
            "department": "gongan",
            "system": "s",
            "entry": ENCODER.entry.id,
            "source": {"type": "file", "folder": str(folder)},
            "fields": COLUMNS,
        }
    )
    return path, FileDropSource(config)


def test_batches_before_the_resume_point_move_no_position(tmp_path: Path) -> None:
    path, source = _export(tmp_path, 2500)
    publisher = _Publisher()
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


def test_a_file_that_changed_while_it_was_read_stays_to_be_read_again(tmp_path: Path) -> None:
    path, source = _export(tmp_path, 10)
    publish_rows = source._publish_rows

    def and_then_the_writer_goes_on(*args: Any) -> Any:
        result = publish_rows(*args)
        with path.open("a", encoding="utf-8") as f:
            f.write(LINE + "\n")
        return result

    source._publish_rows = and_then_the_writer_goes_on  # type: ignore[method-assign]
    state = source.process(path, _Publisher(), None, threading.Event())  # type: ignore[arg-type]
    assert state is None and path.exists() and not (tmp_path / "done").exists()
    assert source.reports == []
