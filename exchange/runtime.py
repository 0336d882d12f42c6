"""Process-level settings of the long-running processes (connectors, router workers)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable
from typing import cast


def freeze_startup_objects() -> None:
    """Put the objects made so far (modules, schemas, settings, clients) out of the cyclic
    garbage collector's reach.

    They live as long as the process, yet every full collection walked them again: a quarter of
    a file connector's CPU time went there (bench/file_connector.py, docs/benchmarks.md). Frozen
    objects are still freed by reference counting; only cycle detection skips them.
    """
    gc.collect()
    gc.freeze()
    release_free_memory()


def release_free_memory() -> None:
    """Give memory freed by Python back to the operating system, where the C library allows.

    Start-up (thousands of grants prepared: schemas built, serialised, registered, parsed) peaks
    and then frees most of what it made, but glibc keeps freed memory in its heaps: a router
    with 10,000 grants stayed about 45 MB larger than it needed (bench/many_grants.py).
    ``malloc_trim`` returns the free pages. A no-op where the C library has no such call.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[int], int], trim)
