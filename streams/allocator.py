"""glibc malloc tuning the worker applies once, before its libraries start their threads.

glibc gives threads their own malloc arenas, up to 8 per core. The worker has dozens of
threads (RocksDB, librdkafka, the ClickHouse engine, executors); memory freed in one arena is
reused only by the threads that land on it, so each arena keeps its own free pages and RSS
grows with the number of arenas, not with what is allocated. A small cap trades a little lock
contention (2 cores here) for that memory. The embedded ClickHouse engine allocates with its
own jemalloc and is not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""mallopt parameter number from glibc's malloc.h."""


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas (0 keeps glibc's default); False where there is no glibc mallopt.

    Call before threads exist: arenas already created stay.
    """
    if arenas <= 0:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_ARENA_MAX, arenas) != 1:
        log.warning("mallopt(M_ARENA_MAX, %d) refused; glibc's default arena count stays", arenas)
        return False
    return True
