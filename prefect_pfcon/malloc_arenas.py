"""Fewer glibc malloc arenas for the service's process.

glibc gives each thread that allocates while the others live an arena of its own, up to eight
per core, and keeps the memory freed in each. The service's many threads (API, runner, step
threads, the Prefect server's, SQLite's) churn short-lived objects, so under a steady load its
resident size kept growing while Python's own allocations did not (tracemalloc's total flat;
``benchmarks/soak.py`` at 15 lifecycles a minute: +33 MB in 8 minutes). With two arenas, as
``MALLOC_ARENA_MAX=2`` sets them, it grew 9 MB in the same run beside it.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter of ``MALLOC_ARENA_MAX``."""
SERVICE_ARENAS = 2


def cap_malloc_arenas(arenas: int = SERVICE_ARENAS) -> bool:
    """Cap this process's malloc arenas at ``arenas`` unless ``MALLOC_ARENA_MAX`` already
    did (glibc reads it at start); whether the cap was set here (False off glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1
