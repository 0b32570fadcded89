"""Start-up: what `make serve` waits for once everything is installed and the catalog registered, by phase.

Each run times `python -m models ensure` on the bench store (the catalog present: a check of each model's stored
record), then `bentoml serve` of the default catalog (1 worker) from its launch to the first `/readyz` 200, split
into phases:

- the arbiter (the `bentoml serve` process): from its start to its worker's process start (psutil's start times of
  both): Python, BentoML's command line, `import service.app` to read the service's configuration, the sockets;
- the worker's imports, from its process start to the service's `__init__`, and `__init__` itself, of which the
  prediction log opened (its database, migrations checked) and the models loaded (skops and scikit-learn imported
  by the first one), as the line each worker logs at start says (`service/monitoring/workers.py`), its imports
  corrected for the error of psutil's start times (`process_clock_error`);
- what remains to the first `/readyz` 200: uvicorn's start-up and the poll (every 50 ms).

On a shared machine those seconds swing with the load; the CPU seconds each process spent to the first `/readyz` 200
do less: `models ensure`'s (its rusage), the arbiter's and the worker's (psutil, read at that answer).

With `--startup-baseline DIR` (a folder holding another commit's `service/` and `models/`, e.g. from `git archive`),
each run starts the baseline too, alternating (ABBA) with the code under test on the same store and interpreter, and
the table has a column for each.
"""

from __future__ import annotations

import logging
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from service.settings import DEFAULT_CATALOG

from .config import VARIANT_BY_KEY
from .report import table
from .servers import Server, base_env, serving

logger = logging.getLogger("bench.startup")

HEADING = "## Start-up"
# the prediction log's and the models' share of `__init__` are absent from the line of commits before they were logged
WORKER_LINE = re.compile(
    r"worker (\d+) started: imports ([\d.]+) s .*__init__ ([\d.]+) s"
    r"(?: \(prediction log ([\d.]+) s, models ([\d.]+) s\))?"
)


@dataclass(frozen=True)
class WorkerStart:
    """What a worker's start-up line says."""

    pid: int
    imports_s: float
    init_s: float
    log_s: float | None
    models_s: float | None


@dataclass(frozen=True)
class Startup:
    ensure_s: float
    ready_s: float
    arbiter_s: float
    imports_s: float
    init_s: float
    log_s: float | None = None
    models_s: float | None = None
    # CPU seconds (user + system) to the first `/readyz` 200
    ensure_cpu_s: float | None = None
    arbiter_cpu_s: float | None = None
    worker_cpu_s: float | None = None

    @property
    def after_init_s(self) -> float:
        return self.ready_s - self.arbiter_s - self.imports_s - self.init_s

    @property
    def make_serve_s(self) -> float:
        return self.ensure_s + self.ready_s


def phases(log: str) -> WorkerStart:
    """The phases of the first worker start in a server's log."""
    match = WORKER_LINE.search(log)
    if match is None:
        raise ValueError("the server's log has no worker start-up line")
    pid, imports_s, init_s, log_s, models_s = match.groups()
    return WorkerStart(
        int(pid),
        float(imports_s),
        float(init_s),
        None if log_s is None else float(log_s),
        None if models_s is None else float(models_s),
    )


def process_clock_error(server: Server) -> float:
    """How far psutil's process start times are ahead of `time.time()`: they count from the boot time, which Linux
    gives in whole seconds, so they may be off by up to a second; the arbiter started at the launch."""
    return float(psutil.Process(server.process.pid).create_time() - server.launched_at)


def started_apart(server: Server, worker_pid: int) -> float:
    """Seconds from the arbiter's process start to the worker's (both running; one clock, so its error cancels)."""
    return float(psutil.Process(worker_pid).create_time() - psutil.Process(server.process.pid).create_time())


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_one(store: Path, source: Path) -> Startup:
    began, cpu_began = time.monotonic(), children_cpu_s()
    subprocess.run([sys.executable, "-m", "models", "ensure"], cwd=source, env=base_env(store), check=True)
    ensure_s, ensure_cpu_s = time.monotonic() - began, children_cpu_s() - cpu_began
    workdir = store / "servers" / "startup"
    models = {"CLF_MODELS": ",".join(DEFAULT_CATALOG)}
    with serving(VARIANT_BY_KEY["default"], store, workdir, source, extra_env=models) as server:
        arbiter_cpu_s = cpu_s(psutil.Process(server.process.pid))
        worker = phases(server.log.read_text(errors="replace"))
        worker_cpu_s = cpu_s(psutil.Process(worker.pid))
        arbiter_s = started_apart(server, worker.pid)
        # the worker's line measures its imports from psutil's start time, to `time.time()`
        imports_s = worker.imports_s + process_clock_error(server)
    return Startup(
        ensure_s, server.ready_s, arbiter_s, imports_s, worker.init_s, worker.log_s, worker.models_s,
        ensure_cpu_s, arbiter_cpu_s, worker_cpu_s,
    )  # fmt: skip


def measure(store: Path, sources: Mapping[str, Path], runs: int) -> dict[str, list[Startup]]:
    """`runs` start-ups of each source by name, alternating ABBA so that a trend in the machine's load falls on
    both alike."""
    results: dict[str, list[Startup]] = {name: [] for name in sources}
    for run in range(runs):
        order = list(sources) if run % 2 == 0 else list(sources)[::-1]
        for name in order:
            results[name].append(measure_one(store, sources[name]))
            logger.info("start-up run %d/%d, %s: %s", run + 1, runs, name, results[name][-1])
    return results


def median_make_serve_s(results: Sequence[Startup]) -> float | None:
    """The start-up target's figure: the median `make serve`, `models ensure` and the launch to `/readyz` 200."""
    return statistics.median(r.make_serve_s for r in results) if results else None


def section(results: Mapping[str, Sequence[Startup]], load_average: str, command: str = "") -> str:
    """The start-up section of docs/benchmarks.md: per source, the median of the runs and the range."""

    def cell(values: list[float | None]) -> str:
        known = [v for v in values if v is not None]
        if not known:
            return "not logged"
        return f"{statistics.median(known):.1f} s ({min(known):.1f}–{max(known):.1f})"

    rows: list[tuple[str, Callable[[Startup], float | None]]] = [
        ("`make serve`, installed: the two rows below", lambda r: r.make_serve_s),
        ("`python -m models ensure`, catalog present", lambda r: r.ensure_s),
        ("`bentoml serve` launch to `/readyz` 200", lambda r: r.ready_s),
        ("· arbiter: its start to the worker's start", lambda r: r.arbiter_s),
        ("· worker: imports, to the service's `__init__`", lambda r: r.imports_s),
        ("· worker: `__init__`", lambda r: r.init_s),
        ("· · of which the prediction log opened", lambda r: r.log_s),
        ("· · of which the models loaded (skops, scikit-learn)", lambda r: r.models_s),
        ("· worker's `__init__` done to `/readyz` 200 (uvicorn, poll)", lambda r: r.after_init_s),
        ("CPU: `models ensure`", lambda r: r.ensure_cpu_s),
        ("CPU: the arbiter, to `/readyz` 200", lambda r: r.arbiter_cpu_s),
        ("CPU: the worker, to `/readyz` 200", lambda r: r.worker_cpu_s),
    ]
    names = list(results)
    runs = max(len(values) for values in results.values())
    lines = [
        HEADING,
        "",
        f"Default catalog, 1 worker, {runs} runs{' of each, alternating' if len(names) > 1 else ''} (median, "
        f"min–max); load average {load_average}"
        + (f"; `{command}`" if command else "")
        + ". `make serve`, installed, waits for `models ensure` and the server (`python -m bench --startup-only` "
        "updates this section alone; phases: bench/startup.py).",
        "",
        table(["phase", *names], [(what, *(cell([of(r) for r in results[n]]) for n in names)) for what, of in rows]),
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
