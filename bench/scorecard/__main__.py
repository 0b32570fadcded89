"""`python -m bench.scorecard` (`make scorecard`): does monitoring detect silent failures, and only them?

Serves the default catalog and a synthetic model with 2 workers, replays clean held-out traffic, then each injected
fault on a fresh server, evaluates the shipped alert rules on the scraped series with promtool, and writes
docs/monitoring-quality.md: which alerts name each fault and after how many requests, how far clean traffic stays
from every threshold, and the label-free estimate against the realized accuracy on the same rows.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from ..config import Variant
from ..servers import PROJECT, base_env, log_tail, serving
from .alerts import evaluate
from .report import PhaseResult, write_report
from .run import run_phase
from .signals import detections, margins
from .traffic import FAULTS, SYNTHETIC, load_models

logger = logging.getLogger("bench.scorecard")

CATALOG = ("breast_cancer", "digits", "digit_attributes", "digit_attributes_ovr", "digit_groups")
MODELS = (*CATALOG, SYNTHETIC)
SERVER = Variant("scorecard", "service 2 workers", workers=2, models=MODELS)
METRICS_FLUSH_SECONDS = "0.2"  # shorter waits for every worker's writes after each step; the values are the same


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scorecard", description=__doc__)
    parser.add_argument("--clean-requests", type=int, default=10_000, help="clean requests per model")
    parser.add_argument("--fault-requests", type=int, default=1_000, help="requests per model under each fault")
    parser.add_argument("--step", type=int, default=50, help="requests per model per step (one virtual minute)")
    parser.add_argument("--faults", default=",".join(f.key for f in FAULTS), help="comma-separated fault keys")
    parser.add_argument("--home", type=Path, default=PROJECT / ".scorecard", help="its BentoML home")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "monitoring-quality.md")
    return parser.parse_args(argv)


def prepare(store: Path) -> None:
    """The catalog (`python -m models ensure`) and the synthetic model, registered into `store` when missing."""
    env = base_env(store)
    subprocess.run([sys.executable, "-m", "models", "ensure"], cwd=PROJECT, env=env, check=True)
    if not (store / "models" / SYNTHETIC).exists():
        subprocess.run([sys.executable, "-m", "bench.scorecard.traffic"], cwd=PROJECT, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    faults = [f for f in FAULTS if f.key in args.faults.split(",")]
    store = args.home.resolve()
    store.mkdir(parents=True, exist_ok=True)
    prepare(store)
    env = {"CLF_MODELS": ",".join(MODELS), "CLF_METRICS_FLUSH_SECONDS": METRICS_FLUSH_SECONDS}
    results: list[PhaseResult] = []
    descriptions: dict[str, dict[str, object]] = {}
    for index, fault in enumerate([None, *faults]):
        name = fault.key if fault else "clean"
        requests = args.fault_requests if fault else args.clean_requests
        with serving(SERVER, store, store / "servers" / name, extra_env=env) as server:
            if not descriptions:
                descriptions = {m: httpx.get(f"{server.url}/models/{m}").json() for m in MODELS}
            models = load_models(descriptions)
            logger.info("%s: %d requests per model, in steps of %d", name, requests, args.step)
            phase = run_phase(server.url, models, fault, requests, args.step, seed=index,
                              log_tail=lambda: log_tail(server.log))  # fmt: skip
        logger.info("%s: evaluating the alert rules on %d scrapes", name, len(phase.scrapes))
        evaluation = evaluate(phase.scrapes, store)
        results.append(
            PhaseResult(
                phase,
                evaluation,
                detections(phase, evaluation) if fault else [],
                {} if fault else {m: margins(phase, m) for m in phase.models},
            )
        )
    command = shlex.join(["python", "-m", "bench.scorecard", *(sys.argv[1:] if argv is None else argv)])
    write_report(args.output, command, results, descriptions)
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    sys.exit(main())
