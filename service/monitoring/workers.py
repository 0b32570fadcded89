"""The worker processes of one server, seen through the files each writes to the Prometheus multiprocess folder.

`bentoml serve` runs its workers under a circus arbiter. A worker that dies (`kill -9`, the OOM killer) is replaced
at the arbiter's next check (every 10 s) wherever BentoML lets circus respawn workers: everywhere except in a
container BentoML built (`BENTOML_CONTAINERIZED`), where it leaves restarts to the orchestrator and would otherwise
serve on with fewer workers. There a dead worker fails `/livez` (`Workers.lost`), so that the orchestrator restarts
the container.

A dead worker's files stay in the folder. Where workers are replaced, the replacement removes them when it starts
(`Workers.clean_up`): its per-pid gauges (the heartbeat series, which then stops being exported, and its `max` and
`live*` gauges), and its drift windows, whose rows it takes over. Counter and histogram files stay: the sums exported
include the dead worker's counts. In a container nothing is removed: the files are how `/livez` knows.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from .metrics import forget_process, gauge_process_ids
from .window import SlidingCounts, remove_windows, window_owners

logger = logging.getLogger(__name__)
# `bentoml serve` sets the root logger to WARNING: this module's few lines (one per worker start) are shown anyway
logger.setLevel(logging.INFO)

# One line per worker start, read by `python -m bench --startup-only` (bench/startup.py): the phases of a start
STARTUP_LOG = (
    "worker %d started: imports %.3f s (process start to the service's __init__), __init__ %.3f s "
    "(prediction log %.3f s, models %.3f s)"
)


def log_startup(init_began: float, log_s: float, models_s: float) -> None:
    """Log how long this worker took to import the service and to run its `__init__`, from the process's start time
    and the time `__init__` began (`time.time()`); of `__init__`, `log_s` opening the prediction log (its database,
    migrations checked) and `models_s` loading the models."""
    now = time.time()
    logger.info(
        STARTUP_LOG, os.getpid(), init_began - psutil.Process().create_time(), now - init_began, log_s, models_s
    )


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by the arbiter, does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


class Workers:
    """The workers that wrote to `directory` (this server's `PROMETHEUS_MULTIPROC_DIR`), dead or alive."""

    def __init__(self, directory: Path, respawned: bool) -> None:
        """`respawned`: whether the arbiter replaces a dead worker (BentoML's choice: not in its containers)."""
        self.directory = directory
        self.respawned = respawned

    def dead(self) -> list[int]:
        """The pids of workers that wrote files here and are gone."""
        owners = gauge_process_ids(self.directory) | {int(o) for o in window_owners(self.directory) if o.isdigit()}
        return sorted(pid for pid in owners if pid != os.getpid() and not process_alive(pid))

    def lost(self) -> list[int]:
        """Dead workers nobody will replace: the reason `/livez` fails."""
        return [] if self.respawned else self.dead()

    def clean_up(self, windows: Iterable[SlidingCounts]) -> list[int]:
        """Remove the files of dead workers, `windows` (this worker's) taking over their drift rows; the pids
        cleaned up. Nothing is removed where workers are not replaced."""
        if not self.respawned:
            return []
        dead = self.dead()
        windows = list(windows)
        for pid in dead:
            for window in windows:
                window.absorb(str(pid))
            remove_windows(self.directory, str(pid))
            forget_process(pid, self.directory)
        return dead
