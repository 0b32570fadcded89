"""`python -m bench.scorecard` (`make scorecard`): does monitoring detect silent failures, and only them?

Serves the default catalog and a synthetic model with 2 workers on ONE server for the whole run: 24 virtual hours of
clean traffic, then each injected fault at graded sizes and shares of the rows, each after a clean warm-up that
flushes every window the rules read. The shipped alert rules are evaluated on the scraped series with promtool in
virtual time (in the background, while the next phase's traffic runs), and docs/monitoring-quality.md says which
alerts name each fault and how soon they fire, how far clean traffic stays from every threshold, and the label-free
estimate against the realized accuracy of the same predictions.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from ..config import Variant
from ..servers import PROJECT, base_env, interrupt_on_signals, log_tail, log_to_stderr, serving
from .alerts import Evaluation, evaluate, rule_metrics
from .report import write_report
from .run import SETTLED_BY, Phase, PhaseRun, Runner
from .signals import Detection, detections
from .traffic import FAULT_BY_KEY, FAULTS, SYNTHETIC, Fault, load_models

logger = logging.getLogger("bench.scorecard")

CATALOG = ("breast_cancer", "digits", "digit_attributes", "digit_attributes_ovr", "digit_groups")
MODELS = (*CATALOG, SYNTHETIC)
SERVER = Variant("scorecard", "service 2 workers", workers=2, models=MODELS)
METRICS_FLUSH_SECONDS = "0.05"  # short waits for every worker's writes after each step; the values are the same
SHARES = (0.1, 0.5, 1.0)
MEDIUM = 1
QUICK_FAULTS = ("scaled_feature", "concept_drift")
ESTIMATE_NAMES = {"classifier_estimated_rows_total", "classifier_estimated_correct_total"}


@dataclass
class PhaseResult:
    run: PhaseRun
    evaluation: Evaluation
    detections: list[Detection]


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scorecard", description=__doc__)
    parser.add_argument("--clean-steps", type=int, default=1440, help="clean steps (virtual minutes), all models")
    parser.add_argument("--warmup", type=int, default=60, help="clean steps before each fault (flush every window)")
    parser.add_argument("--fault-steps", type=int, default=40, help="steps (virtual minutes) of each fault")
    parser.add_argument("--label-delay", type=int, default=5, help="steps between a prediction and its label")
    parser.add_argument(
        "--grid",
        choices=("full", "reduced"),
        default="reduced",
        help="full: 3 sizes × 3 shares per fault; reduced: 3 sizes at 100 %% and 3 shares at medium",
    )
    parser.add_argument("--faults", default=",".join(f.key for f in FAULTS), help="comma-separated fault keys")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: 20 clean steps, {', '.join(QUICK_FAULTS)} at medium on 100 %% for 10 steps",
    )
    # The classifier_realized_* gauges are computed at each scrape over a wall-clock window of the prediction log:
    # over the default day every scrape reads every prediction of the run (/metrics grew from 0.14 to 1 s over the
    # clean day). 10 s is 20 to 45 virtual minutes at the step times measured (0.23 to 0.5 s), under the warm-up, so
    # a fault's labels leave the window before the next fault. Rules on counters of labels count in virtual time and
    # do not depend on it.
    parser.add_argument(
        "--feedback-window-seconds",
        type=float,
        default=10.0,
        help="CLF_FEEDBACK_WINDOW_SECONDS of the server (wall clock)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=PROJECT / ".scorecard", help="its BentoML home")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "monitoring-quality.md")
    args = parser.parse_args(argv)  # fmt: skip
    if args.quick:
        args.clean_steps, args.warmup, args.fault_steps, args.faults = 20, 10, 10, ",".join(QUICK_FAULTS)
        args.grid = "quick"
    return args


def plan(faults: list[Fault], grid: str, warmup: int, steps: int, clean_steps: int) -> list[Phase]:
    phases = [Phase(None, 0.0, 1.0, 0, clean_steps)]
    for fault in faults:
        if fault.ramp:
            cells = [(fault.sizes[-1], 1.0)]
        elif grid == "full":
            cells = [(size, share) for size in fault.sizes for share in SHARES]
        elif grid == "reduced":
            medium = fault.sizes[MEDIUM]
            cells = [(size, 1.0) for size in fault.sizes] + [(medium, share) for share in SHARES if share < 1.0]
        else:
            cells = [(fault.sizes[MEDIUM], 1.0)]
        phases += [Phase(fault, size, share, warmup, steps) for size, share in cells]
    return phases


def prepare(store: Path) -> None:
    """The catalog (`python -m models ensure`) and the synthetic model, registered into `store` when missing."""
    env = base_env(store)
    subprocess.run([sys.executable, "-m", "models", "ensure"], cwd=PROJECT, env=env, check=True)
    subprocess.run([sys.executable, "-m", "bench.scorecard.traffic"], cwd=PROJECT, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    interrupt_on_signals()  # the server is stopped on SIGTERM too
    log_to_stderr()
    faults = [FAULT_BY_KEY[key] for key in args.faults.split(",")]
    phases = plan(faults, args.grid, args.warmup, args.fault_steps, args.clean_steps)
    store = args.home.resolve()
    store.mkdir(parents=True, exist_ok=True)
    prepare(store)
    env = {
        "CLF_MODELS": ",".join(MODELS),
        "CLF_METRICS_FLUSH_SECONDS": METRICS_FLUSH_SECONDS,
        "CLF_FEEDBACK_WINDOW_SECONDS": f"{args.feedback_window_seconds:g}",
        "CLF_LOG_INPUTS": "false",  # the labels need the decisions only
    }
    began = time.monotonic()
    pending: list[tuple[PhaseRun, Future[Evaluation]]] = []
    with (
        serving(SERVER, store, store / "servers" / "scorecard", extra_env=env) as server,
        ThreadPoolExecutor(1) as promtool,
    ):
        descriptions = {m: httpx.get(f"{server.url}/models/{m}").json() for m in MODELS}
        models = load_models(descriptions)
        wanted = rule_metrics() | ESTIMATE_NAMES | set(SETTLED_BY)
        runner = Runner(server.url, models, wanted, args.label_delay, lambda: log_tail(server.log))
        try:
            for index, phase in enumerate(phases):
                logger.info("phase %d/%d %s: %d warm-up + %d steps", index + 1, len(phases), phase.key,
                            phase.warmup, phase.steps)  # fmt: skip
                run = runner.run(phase, np.random.default_rng([args.seed, index]))
                logger.info("  %.0f s, %.2f s a step", run.seconds, run.seconds / (phase.warmup + phase.steps))
                future = promtool.submit(evaluate, runner.scrapes, run.start, run.stop, phase.fault is None, store)
                pending.append((run, future))
        finally:
            runner.close()
        traffic_s = time.monotonic() - began
        results = []
        for run, future in pending:
            evaluation = future.result()
            logger.info("%s: promtool %.0f s", run.phase.key, evaluation.promtool_seconds)
            results.append(PhaseResult(run, evaluation, detections(run, evaluation) if run.phase.fault else []))
    timing = {
        "total_s": time.monotonic() - began,
        "traffic_s": traffic_s,
        "step_s": float(np.mean(runner.step_seconds)),
        "promtool_s": sum(r.evaluation.promtool_seconds for r in results),
    }
    command = shlex.join(["python", "-m", "bench.scorecard", *(sys.argv[1:] if argv is None else argv)])
    write_report(args.output, command, results, descriptions, args, timing)
    logger.info("wrote %s in %.0f s", args.output, timing["total_s"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    sys.exit(main())
