"""Samples of the server while the traffic runs: RSS and open file descriptors of the arbiter and each worker, the
files in its Prometheus multiprocess folder, the size of its prediction log."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import psutil

from ..servers import Server
from .figures import ARBITER, WORKER, ProcessSample, Sample

WORKER_FLAG = "--worker-id"  # on the command line of BentoML's worker processes


def role(process: psutil.Process, arbiter_pid: int) -> str:
    if process.pid == arbiter_pid:
        return ARBITER
    with contextlib.suppress(psutil.Error):
        if WORKER_FLAG in process.cmdline():
            return WORKER
    return "other"


class Sampler:
    """Takes a `Sample` every `every_s` seconds on a thread of its own, from `start()` to `stop()`; sets
    `server_exited` (and stops) if the server's process exits meanwhile."""

    def __init__(
        self, server: Server, multiproc: Path, database: Path, started: float, every_s: float,
        server_exited: threading.Event,
    ) -> None:  # fmt: skip
        self.server = server
        self.multiproc = multiproc
        self.database = database
        self.started = started
        self.every_s = every_s
        self.server_exited = server_exited
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-sampler")

    def take(self) -> Sample:
        found = []
        for process in self.server.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                found.append(
                    ProcessSample(process.pid, role(process, self.server.process.pid), process.memory_info().rss,
                                  process.num_fds())
                )  # fmt: skip
        sample = Sample(time.monotonic() - self.started, tuple(found), self._files(), self._database_bytes())
        self.samples.append(sample)
        return sample

    def _files(self) -> int:
        try:
            return sum(1 for path in self.multiproc.iterdir() if path.is_file())
        except OSError:
            return 0

    def _database_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += (self.database.parent / (self.database.name + suffix)).stat().st_size
        return total

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling, with a last sample now (unless the thread took one this very second)."""
        self._stop.set()
        self._thread.join()
        if not self.samples or time.monotonic() - self.started - self.samples[-1].at >= 1.0:
            self.take()

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self.started + len(self.samples) * self.every_s - time.monotonic())):
            self.take()
            if self.server.process.poll() is not None:
                self.server_exited.set()
                return
