"""`python -m bench.soak` (`make soak`): does a long stretch of clean traffic look like its first minutes?

Serves the five catalog models with 2 workers and a real Prometheus scraping them with the shipped rules, sends
steady mixed traffic (predictions of every task with options, feedback, reads) for `--minutes`, samples the
server's memory, file descriptors and files every 10 s, then stops it gracefully and checks its prediction log.
Writes docs/soak.md; the exit status is 1 when a criterion fails (RSS growth after warm-up, 5xx, unanswered or
refused requests, the log incomplete, an alert fired).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from service.home import server_metrics_folder

from .. import home, machine
from ..config import Variant
from ..scorecard.traffic import load_models
from ..servers import PROJECT, Server, ServerError, interrupt_on_signals, log_to_stderr, serving, stop
from . import prometheus
from .figures import Alert, Completeness, Outcome, Sample, exit_code
from .report import SoakRun, render
from .sampler import Sampler
from .traffic import Traffic, served

logger = logging.getLogger("bench.soak")

WORKERS = 2
SAMPLE_S = 10.0
SCRAPE_S = 5.0
WARMUP_MINUTES = 5.0
STOP_GRACE_S = 30.0  # the graceful-stop criterion: a server still running then is killed


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of traffic (default 30)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, all threads (default 100)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--slice-minutes", type=float, default=5.0, help="the report's time slices (default 5)")
    parser.add_argument(
        "--warmup-minutes", type=float,
        help=f"RSS growth is measured after this (default {WARMUP_MINUTES:g}, or a third of a shorter run)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="of the traffic's random draws")
    parser.add_argument("--home", type=Path, default=PROJECT / ".soak", help="its BentoML home and run folder")
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "soak.md", help="the report file")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.threads < 1 or args.slice_minutes <= 0:
        parser.error("--minutes, --rate, --slice-minutes must be positive and --threads at least 1")
    if args.warmup_minutes is None:
        args.warmup_minutes = min(WARMUP_MINUTES, args.minutes / 3)
    if not 0 <= args.warmup_minutes < args.minutes:
        parser.error("--warmup-minutes must be at least 0 and shorter than the run")
    return args


def prometheus_version() -> str:
    """`2.42.0+ds` from `prometheus, version 2.42.0+ds (branch: ...)`."""
    done = subprocess.run(["prometheus", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"version (\S+)", done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def graceful_stop(server: Server) -> tuple[bool, str]:
    """SIGTERM the server (its process group) and wait: whether it exited by itself, and how."""
    started = time.monotonic()
    exited = stop(server.process, grace_s=STOP_GRACE_S)
    took = time.monotonic() - started
    code = server.process.returncode
    graceful = exited and code != -signal.SIGKILL
    how = f"exited in {took:.1f} s with status {code}" if graceful else f"killed after {took:.0f} s (status {code})"
    return graceful, f"SIGTERM, {how}"


@dataclass
class Measured:
    """What the run under traffic gave, up to the server's stop."""

    traffic: Traffic
    samples: list[Sample]
    elapsed_s: float  # of traffic
    alerts: list[Alert]
    scrapes: int
    lowest_up: float | None
    graceful: bool
    stop_detail: str
    unmeasured: list[str]


def measure(args: argparse.Namespace, store: Path, run_dir: Path, source: Path, catalog: tuple[str, ...]) -> Measured:
    """Serve `catalog` (in `run_dir`), start Prometheus, send the traffic while sampling, read the alerts, stop
    both."""
    variant = Variant("soak", f"service {WORKERS} workers", workers=WORKERS, models=catalog)
    unmeasured: list[str] = []
    alerts: list[Alert] = []
    scrapes, lowest_up = 0, None
    with serving(variant, store, run_dir, source, extra_env={"CLF_MODELS": ",".join(catalog)}) as server:
        descriptions = {m: httpx.get(f"{server.url}/models/{m}", timeout=60).json() for m in catalog}
        models = [served(model, descriptions[model.name]) for model in load_models(descriptions)]
        traffic = Traffic(server.url, models, args.rate, args.threads, args.seed)
        with prometheus.running([server.url], run_dir / "prometheus", SCRAPE_S) as prom:
            stop_traffic = threading.Event()
            started_wall, started = time.time(), time.monotonic()
            metrics = server_metrics_folder(run_dir, server.process.pid)
            sampler = Sampler(server, metrics, run_dir / "data" / "predictions.db", started, SAMPLE_S, stop_traffic)
            logger.info("traffic: %g requests/s for %g minutes", args.rate, args.minutes)
            sampler.start()
            try:
                traffic.run(args.minutes * 60, started, stop_traffic)
            finally:
                stop_traffic.set()  # the client threads too, when the harness is interrupted
                sampler.stop()
            elapsed = min(args.minutes * 60, time.monotonic() - started)
            if server.process.poll() is not None:
                unmeasured.append(f"the server, which exited with {server.process.returncode} during the run")
            try:
                alerts = prom.alerts(started_wall, time.time(), SCRAPE_S)
                scrapes, lowest_up = prom.scrapes(started_wall, time.time())
            except (httpx.HTTPError, RuntimeError, ServerError) as exc:
                logger.error("could not read the alerts from Prometheus: %s", exc)
                unmeasured.append(f"the alerts ({type(exc).__name__}: {str(exc)[:200]})")
        logger.info("stopping the server (SIGTERM)")
        graceful, stop_detail = graceful_stop(server)
    return Measured(traffic, sampler.samples, elapsed, alerts, scrapes, lowest_up, graceful, stop_detail, unmeasured)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    log_to_stderr()
    interrupt_on_signals()
    store = args.home.resolve()
    os.environ["BENTOML_HOME"] = str(store)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    command = shlex.join(["python", "-m", "bench.soak", *(sys.argv[1:] if argv is None else argv)])

    store.mkdir(parents=True, exist_ok=True)
    source = home.snapshot(store)
    facts = machine.collect(PROJECT, f"httpx {httpx.__version__}, {args.threads} threads, open loop")
    home.prepare(store, source, modules=("models",))
    from models.catalog import CATALOG  # from the snapshot, like the server's code
    from service.export import ExportError
    from service.settings import Settings

    from .completeness import check

    run_dir = store / "run"  # the server's home: its models, log, multiprocess folder; and Prometheus's
    measured = measure(args, store, run_dir, source, tuple(CATALOG))
    logger.info("checking the prediction log")
    ledger = measured.traffic.ledger
    try:
        found = check(Settings(data_dir=run_dir / "data", database_url=None), ledger.requests, ledger.acknowledged)
    except ExportError as exc:
        measured.unmeasured.append(f"the prediction log ({exc})")
        found = Completeness(0, 0, 0, 0, 0, 0)
    outcome = Outcome(
        found, measured.alerts, len(ledger.refused), measured.graceful, measured.stop_detail, measured.unmeasured
    )
    run = SoakRun(
        machine=facts,
        command=command,
        duration_s=measured.elapsed_s,
        rate=args.rate,
        threads=args.threads,
        workers=WORKERS,
        models=tuple(CATALOG),
        warmup_s=args.warmup_minutes * 60,
        slice_s=args.slice_minutes * 60,
        sample_s=SAMPLE_S,
        scrape_s=SCRAPE_S,
        prometheus=prometheus_version(),
        scrapes=measured.scrapes,
        lowest_up=measured.lowest_up,
        calls=ledger.calls,
        samples=measured.samples,
        outcome=outcome,
        skipped=ledger.skipped,
        unexpected=ledger.unexpected,
        load_after=machine.load_average(),
    )
    text = render(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    raw = {"samples": [asdict(s) for s in run.samples], "outcome": asdict(outcome), "calls": len(run.calls)}
    (store / "last-run.json").write_text(json.dumps(raw, indent=1, default=str))
    sys.stdout.write(text)
    logger.info("wrote %s", args.out)
    return exit_code(run.criteria())


if __name__ == "__main__":
    sys.exit(main())
