"""Counts over a sliding time window, shared by every worker of a server.

Each worker adds its counts to its own memory-mapped file (one row per time slot, a ring); a reader sums the
recent slots of every worker's file. The files live in `PROMETHEUS_MULTIPROC_DIR`, which BentoML wipes at each
start, so the window shares the metrics' lifetime. A dead worker's rows stay valid: they are rows it served, and
the worker that replaces it takes them over (`absorb`) rather than leave one more file behind per restart.

The same files, of kind `TOTALS` with one slot of infinite length, count since the start: the drift bins' counters.

A file is never truncated: it may be mapped, and touching a mapping whose file shrank under it is a SIGBUS that kills
the worker. A process maps each file once (`_mapped_ring`) and every `SlidingCounts` of that key shares the mapping,
so a model version that comes back (a rollback, a shadow promoted, a reload) goes on counting where it stopped, and
its drift-bin counters never go backwards.
"""

from __future__ import annotations

import mmap
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINDOW = "window"
TOTALS = "totals"


class SlidingCounts:
    """`width` counters over the last `slots` x `slot_seconds` seconds, summed over workers."""

    def __init__(
        self,
        directory: Path,
        key: str,
        width: int,
        slot_seconds: float,
        slots: int,
        owner: str | None = None,
        kind: str = WINDOW,
    ) -> None:
        """`owner` names this writer's file (default: the worker's pid); `kind` its files' prefix (`TOTALS`: counts
        since the start, one slot of infinite length, that outlive their writer as Prometheus counters' files do)."""
        self.width = width
        self.slot_seconds = slot_seconds
        self.slots = slots
        safe_key = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
        self._pattern = window_file(safe_key, "*", kind)  # '@' cannot occur in safe_key: no key matches another's
        self._safe_key = safe_key
        self._kind = kind
        path = directory / window_file(safe_key, owner or str(os.getpid()), kind)
        directory.mkdir(parents=True, exist_ok=True)
        # column 0 holds the slot number a row counts for; the rest are the counters
        self._ring, self._lock = _mapped_ring(path, (slots, width + 1))
        self._directory = directory

    def add(self, counts: np.ndarray, offset: int = 0, now: float | None = None) -> None:
        """Add `counts` to the counters from `offset` on, in the current time slot."""
        with self._lock:  # the inference thread and the event loop both add
            self._current_row(now)[1 + offset : 1 + offset + len(counts)] += counts

    def add_one(self, column: int, count: float, now: float | None = None) -> None:
        """Add `count` to one counter in the current time slot."""
        with self._lock:
            self._current_row(now)[1 + column] += count

    def _current_row(self, now: float | None) -> np.ndarray:
        return self._row(self._slot(now))

    def _slot(self, now: float | None) -> int:
        return int((time.time() if now is None else now) // self.slot_seconds)

    def _row(self, slot: int) -> np.ndarray:
        """The ring row of `slot`, emptied first if it still holds an older slot's counts."""
        row: np.ndarray = self._ring[slot % self.slots]
        if row[0] != slot:
            row[1:] = 0
            row[0] = slot
        return row

    def absorb(self, owner: str, now: float | None = None) -> bool:
        """Take over the file of a writer that is gone (a dead worker's, of this key): its slots still in the window
        are added to this writer's, and its file is removed. Whether there was such a file."""
        path = self._directory / window_file(self._safe_key, owner, self._kind)
        claimed = path.with_name(f"{path.name}.absorbed-by-{os.getpid()}")  # out of the readers' pattern
        try:
            path.rename(claimed)  # one taker per file, should two replacements start together
        except FileNotFoundError:
            return False
        try:
            ring = self._read(claimed)
        finally:
            claimed.unlink(missing_ok=True)
        if ring is None:
            return True
        with self._lock:
            for row in ring[self._recent(ring, self._slot(now))]:
                self._row(int(row[0]))[1:] += row[1:]
        return True

    def total(self, now: float | None = None) -> np.ndarray:
        """The counts of the window ending now, summed over every worker's file."""
        current = self._slot(now)
        total = np.zeros(self.width)
        for path in self._directory.glob(self._pattern):
            ring = self._read(path)
            if ring is not None:
                total += ring[self._recent(ring, current), 1:].sum(axis=0)
        return total

    def _read(self, path: Path) -> np.ndarray | None:
        try:
            return np.fromfile(path, dtype=np.float64).reshape(self.slots, self.width + 1)
        except (OSError, ValueError):  # another layout (an older model version), a file being created or taken
            return None

    def _recent(self, ring: np.ndarray, current: int) -> np.ndarray:
        """Which rows of a ring count for the window ending at slot `current`."""
        recent: np.ndarray = (ring[:, 0] > current - self.slots) & (ring[:, 0] <= current)
        return recent


# Every ring this process maps, by file: the same key's file is mapped once, with one lock for its writers.
_rings: dict[Path, _Ring] = {}
_rings_lock = threading.Lock()


@dataclass(frozen=True)
class _Ring:
    counts: np.ndarray
    lock: threading.Lock
    file: tuple[int, int]  # (device, inode): a file removed and made anew at the path is another file


def _mapped_ring(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, threading.Lock]:
    """The ring of `path` mapped into this process, and the lock its writers share: this process's mapping of the
    file if it has one, else the file's, created at `shape` (only the owner maps a file, so one this process does not
    map may change size). A file found with the same layout keeps its counts: a worker that reuses a dead worker's
    pid takes its rows over."""
    with _rings_lock:
        known = _rings.get(path)
        if known is not None and known.file == _file_id(path):
            if known.counts.shape != shape:
                raise ValueError(f"{path.name} is mapped as {known.counts.shape} (rows, columns), not {shape}")
            return known.counts, known.lock
        size = 8 * shape[0] * shape[1]
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            status = os.fstat(descriptor)
            if status.st_size != size:
                os.ftruncate(descriptor, size)
            mapping = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        # a plain ndarray over the shared pages: indexing it is much cheaper than numpy.memmap's
        counts = np.frombuffer(mapping, dtype=np.float64).reshape(shape)
        if status.st_size != size:  # a new file, or one of another layout: no slot is valid in it yet
            counts[:, 1:] = 0
            counts[:, 0] = -1
        ring = _rings[path] = _Ring(counts, threading.Lock(), (status.st_dev, status.st_ino))
        return ring.counts, ring.lock


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def window_file(safe_key: str, owner: str, kind: str = WINDOW) -> str:
    return f"clf_{kind}_{safe_key}@{owner}.bin"


def window_owners(directory: Path) -> set[str]:
    """The writers (worker pids) with a window file in `directory`."""
    return {path.stem.rpartition("@")[2] for path in directory.glob(window_file("*", "*"))}


def remove_windows(directory: Path, owner: str) -> None:
    """Remove every window file of `owner` (the keys no one took over: versions no longer served)."""
    for path in directory.glob(window_file("*", owner)):
        path.unlink(missing_ok=True)
