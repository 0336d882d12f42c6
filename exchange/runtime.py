"""Process-level settings of the long-running processes (connectors, router workers)."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Put the objects made so far (modules, schemas, settings, clients) out of the cyclic
    garbage collector's reach.

    They live as long as the process, yet every full collection walked them again: a quarter of
    a file connector's CPU time went there (bench/file_connector.py, docs/benchmarks.md). Frozen
    objects are still freed by reference counting; only cycle detection skips them.
    """
    gc.collect()
    gc.freeze()
