"""glibc's allocator, set for a long-running worker with threads that come and go.

A 30-minute soak (docs/soak.md) saw a worker's RSS grow by about 0.7 MB a minute while what it used did not: Python's
traced memory stayed flat (tracemalloc), as did glibc's bytes in use (`mallinfo2`: about 85 MB), and SQLite's heap
moved between 2 and 7 MB; the growth was free memory held inside glibc's arenas (13 MB, then 28 MB seven minutes
later), which `malloc_trim` did not give back. glibc gives each new thread an arena of its own, up to 8 per CPU, and
the database and request threads come and go (anyio's pool retires a thread idle for 10 s), each leaving free
chunks between live ones in some arena. Two arenas bound that; a fixed mmap threshold keeps glibc from raising it
(to up to 32 MB) after each large free, so a large array is returned to the system when freed instead of leaving a
hole in an arena.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD_BYTES = 256 * 1024


def tune_allocator() -> bool:
    """Set glibc's arena count and mmap threshold, unless the environment sets them (`MALLOC_ARENA_MAX`,
    `MALLOC_MMAP_THRESHOLD_`) or the C library is not glibc. Call it before the worker starts its threads: an arena
    already made stays. True when both were set."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to set
    settings = {
        "MALLOC_ARENA_MAX": (M_ARENA_MAX, ARENAS),
        "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    }
    applied = True
    for variable, (parameter, value) in settings.items():
        if variable in os.environ:
            continue  # the operator's choice
        if mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
            logger.warning("mallopt(%d, %d) failed: glibc's default stays", parameter, value)
            applied = False
    return applied
