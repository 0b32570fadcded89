"""Start-up: what `make serve` waits for once everything is installed and the catalog registered.

Each run times `python -m models ensure` on the bench store (the catalog present: a check of each model's stored
record), then `bentoml serve` of the default catalog (1 worker) from its launch to the first `/readyz` 200, split by
the line each worker logs at start (`service/monitoring/workers.py`): the imports (from the worker process's start
to the service's `__init__`) and `__init__` (the models loaded, the prediction log opened). What remains of the
time to ready is the arbiter's own start-up and the poll.
"""

from __future__ import annotations

import logging
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.settings import DEFAULT_CATALOG

from .config import VARIANT_BY_KEY
from .report import table
from .servers import base_env, serving

logger = logging.getLogger("bench.startup")

HEADING = "## Start-up"
WORKER_LINE = re.compile(r"worker \d+ started: imports ([\d.]+) s .*__init__ ([\d.]+) s")


@dataclass(frozen=True)
class Startup:
    ensure_s: float
    ready_s: float
    imports_s: float
    init_s: float


def phases(log: str) -> tuple[float, float]:
    """The imports and `__init__` seconds of the first worker start in a server's log."""
    match = WORKER_LINE.search(log)
    if match is None:
        raise ValueError("the server's log has no worker start-up line")
    return float(match[1]), float(match[2])


def measure(store: Path, source: Path, runs: int) -> list[Startup]:
    results = []
    for run in range(runs):
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "models", "ensure"], cwd=source, env=base_env(store), check=True)
        ensure_s = time.monotonic() - began
        workdir = store / "servers" / "startup"
        models = {"CLF_MODELS": ",".join(DEFAULT_CATALOG)}
        with serving(VARIANT_BY_KEY["default"], store, workdir, source, extra_env=models) as server:
            imports_s, init_s = phases(server.log.read_text(errors="replace"))
            results.append(Startup(ensure_s, server.ready_s, imports_s, init_s))
        logger.info("start-up run %d/%d: %s", run + 1, runs, results[-1])
    return results


def median_ready_s(results: Sequence[Startup]) -> float | None:
    """The start-up target's figure: the median launch to `/readyz` 200."""
    return statistics.median(r.ready_s for r in results) if results else None


def section(results: Sequence[Startup], load_average: str) -> str:
    """The start-up section of docs/benchmarks.md: the median of the runs and the range."""

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} s ({min(values):.1f}–{max(values):.1f})"

    rows = [
        ("`python -m models ensure`, catalog present", [r.ensure_s for r in results]),
        ("`bentoml serve` launch to `/readyz` 200", [r.ready_s for r in results]),
        ("of which the worker's imports", [r.imports_s for r in results]),
        ("of which the worker's `__init__` (models)", [r.init_s for r in results]),
    ]
    lines = [
        HEADING,
        "",
        f"Default catalog, 1 worker, {len(results)} runs (median, min–max); load average {load_average}. "
        "`make serve`, installed, waits for the first two rows (`python -m bench --startup-only` updates this "
        "section alone).",
        "",
        table(["phase", "time"], [(what, cell(values)) for what, values in rows]),
    ]
    return "\n".join(lines) + "\n"


def write_section(report: Path, section: str) -> None:
    """Put `section` in the report in place of its start-up section, or before its notes when it has none."""
    text = report.read_text() if report.exists() else "# Benchmarks\n"
    start = text.find(HEADING + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    elif (notes := text.find("\n## Notes\n")) >= 0:
        text = text[: notes + 1] + section + "\n" + text[notes + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text)
