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
    trim = _libc_call("malloc_trim", (ctypes.c_size_t,))
    if trim is not None:
        trim(0)


#: glibc's ``mallopt`` parameter ``M_MMAP_THRESHOLD``.
_M_MMAP_THRESHOLD = -3
#: glibc's initial threshold: blocks from 128 KiB up are mapped on their own.
MMAP_THRESHOLD_BYTES = 128 * 1024


def map_large_blocks() -> None:
    """Keep large allocations mapped on their own, so memory they free goes back at once.

    glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB); after
    that, large blocks come from its heaps, and what they free stays in the process. The
    router's per-key state grows in large blocks (hash tables that double, 1 MiB row blocks),
    so each doubling left the old table behind: 407 -> 372 MiB peak RSS for 1,000,000 keys
    (bench/key_state.py, docs/benchmarks.md). Setting the threshold also turns the raising off.
    A no-op where the C library has no ``mallopt``."""
    mallopt = _libc_call("mallopt", (ctypes.c_int, ctypes.c_int))
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


@functools.cache
def _libc_call(name: str, argtypes: tuple[type, ...]) -> Callable[..., int] | None:
    """The C library's function ``name``, or ``None`` where it has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        call = getattr(libc, name)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    call.argtypes = list(argtypes)
    call.restype = ctypes.c_int
    return cast(Callable[..., int], call)
