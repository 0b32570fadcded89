"""glibc's arenas stay at two in a worker with many threads (service/allocator.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.allocator import ARENAS

# Threads that each allocate outside Python's small-object allocator, then glibc's own report of its arenas.
THREADS_THEN_ARENAS = """
import ctypes, sys, threading
from service.allocator import tune_allocator
if sys.argv[1] == "tuned":
    assert tune_allocator()
start = threading.Barrier(8)
def allocate():
    start.wait()
    blocks = [ctypes.create_string_buffer(4096) for _ in range(200)]
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
report = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(report))
libc.fclose(ctypes.c_void_p(report))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")


def arenas(mode: str, tmp_path: Path, **env: str) -> int:
    report = tmp_path / f"{mode}.xml"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    subprocess.run([sys.executable, "-c", THREADS_THEN_ARENAS, mode, str(report)], check=True, env=environment)
    return len(re.findall(r'<heap nr="\d+">', report.read_text()))


def test_a_tuned_worker_keeps_two_arenas_however_many_threads_allocate(tmp_path: Path) -> None:
    assert arenas("default", tmp_path) > ARENAS  # glibc's default: an arena per new thread, up to 8 per CPU
    assert arenas("tuned", tmp_path) <= ARENAS


def test_the_operators_malloc_arena_max_wins(tmp_path: Path) -> None:
    assert arenas("tuned", tmp_path, MALLOC_ARENA_MAX="4") > ARENAS
