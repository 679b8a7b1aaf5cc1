"""The worker's glibc arena cap: threads started after it share at most that many arenas."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from streams.allocator import limit_malloc_arenas

REPO_ROOT = Path(__file__).resolve().parents[3]

# Eight threads allocate at once, then malloc_info(3) counts the arenas (one <heap> each).
COUNT_ARENAS = """
import ctypes, re, sys, threading
from streams.allocator import limit_malloc_arenas
limit_malloc_arenas(int(sys.argv[1]))
start = threading.Barrier(8)
def work():
    start.wait()
    blocks = [bytearray(4096) for _ in range(2000)]
    start.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL("libc.so.6")
libc.open_memstream.restype = ctypes.c_void_p
buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(len(re.findall("<heap nr=", ctypes.string_at(buffer, size.value).decode())))
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt/malloc_info are glibc's")


def arenas_used(cap: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, str(cap)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@glibc_only
def test_capped_worker_threads_share_at_most_the_cap_of_arenas() -> None:
    assert arenas_used(2) <= 2
    assert arenas_used(0) > 2  # glibc's default gives busy threads their own arenas


def test_zero_keeps_glibc_default() -> None:
    assert limit_malloc_arenas(0) is False
