"""`python -m bench`: benchmark the service against its peers (measured live, same run) and the raw model; writes
docs/benchmarks.md.

Runs the whole default matrix unless `--variants`, `--models` or `--scenarios` narrow it, then the feedback
benchmark (`POST /feedback` on SQLite and PostgreSQL) unless `--no-feedback`; `--feedback-only` runs that alone.
Needs `wrk` (`bench/install-wrk.sh`, run by `make bench`); installs each peer's pinned environment under
`.bench/peers/` (reused while its requirements file is unchanged); for PostgreSQL the server binaries of
`scripts/install-system-deps.sh`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from . import feedback, floor, home, machine, payloads, peers, report, runner, startup, wrk
from .config import (
    ALL_MODELS,
    BENCH_MODELS,
    CATALOG_MODELS,
    DEFAULT_DURATION_S,
    FEEDBACK_DATABASES,
    QUICK_DURATION_S,
    SCENARIO_BY_KEY,
    SCENARIOS,
    VARIANT_BY_KEY,
    VARIANTS,
    WARMUP_S,
    Variant,
)
from .servers import PROJECT, Server, interrupt_on_signals, log_to_stderr

logger = logging.getLogger("bench")

FLOOR_BUDGET_S = 1.0
QUICK_FLOOR_BUDGET_S = 0.3


def choice_list(known: list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in chosen if item not in known]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"unknown {unknown or 'empty list'}; choose from {','.join(known)}")
        return chosen

    return parse


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_DURATION_S:.0f} s per point instead of {DEFAULT_DURATION_S:.0f} s"
    )
    parser.add_argument("--duration", type=float, help="seconds per measured point (overrides --quick)")
    parser.add_argument("--variants", type=choice_list(list(VARIANT_BY_KEY)), default=list(VARIANT_BY_KEY),
                        help=f"comma-separated subset of {','.join(VARIANT_BY_KEY)}")  # fmt: skip
    parser.add_argument("--models", type=choice_list(list(ALL_MODELS)), default=list(ALL_MODELS),
                        help=f"comma-separated subset of {','.join(ALL_MODELS)}")  # fmt: skip
    parser.add_argument("--scenarios", type=choice_list(list(SCENARIO_BY_KEY)), default=list(SCENARIO_BY_KEY),
                        help="comma-separated subset of 1x1,1x16,64x4 (rows x connections)")  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per point, variants alternating; the median is kept"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the in-process raw floor")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--no-feedback", action="store_true", help="skip the POST /feedback benchmark")
    only.add_argument("--feedback-only", action="store_true",
                      help="only the POST /feedback benchmark: no raw floor, no /predict load")  # fmt: skip
    only.add_argument("--startup-only", action="store_true",
                      help="only the start-up table: update its section of the report, nothing else")  # fmt: skip
    parser.add_argument(
        "--startup-runs", type=int, default=3, help="start-ups measured (the median is kept); 0: no start-up section"
    )
    parser.add_argument("--startup-baseline", type=Path, metavar="DIR",
                        help="also start the service/ and models/ of DIR (another commit), alternating")  # fmt: skip
    parser.add_argument("--feedback-databases", type=choice_list(list(FEEDBACK_DATABASES)),
                        default=list(FEEDBACK_DATABASES),
                        help=f"comma-separated subset of {','.join(FEEDBACK_DATABASES)}")  # fmt: skip
    parser.add_argument("--home", type=Path, default=PROJECT / ".bench", help="bench BentoML home (default .bench/)")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "benchmarks.md", help="the report file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    log_to_stderr()
    interrupt_on_signals()
    store = args.home.resolve()
    os.environ["BENTOML_HOME"] = str(store)  # before anything imports bentoml
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    duration = args.duration or (QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])

    store.mkdir(parents=True, exist_ok=True)
    source = home.snapshot(store)
    if args.startup_only:
        home.prepare(store, source, modules=("models",))
        return write_startup(args, store, source, command)
    facts = machine.collect(PROJECT, wrk.version())
    home.prepare(store, source)
    support = home.settings_support()
    models = [] if args.feedback_only else [m for m in ALL_MODELS if m in args.models]
    scenarios = [s for s in SCENARIOS if s.key in args.scenarios]
    variants = [v for v in VARIANTS if v.key in args.variants]
    measured = [v for v in variants if set(v.models) & set(models)]
    chosen_peers = [v.peer for v in measured if v.peer is not None]
    protocols = {"json", *(v.protocol for v in measured)}
    bodies = payloads.write_bodies(store / "bodies", models, [s.rows for s in scenarios], sorted(protocols))
    expected = {}
    if chosen_peers or protocols != {"json"}:  # the service's V2 answer is checked like a peer's
        peers.install(store, chosen_peers)
        peers.export(store, CATALOG_MODELS)  # a peer loads every model it serves, whichever this run measures
        served = [m for m in CATALOG_MODELS if m in models]
        expected = {
            (m, s.rows): peers.predict_proba(store, m, payloads.take(m, s.rows)) for m in served for s in scenarios
        }

    floor_results = []
    if not args.no_floor and models:
        logger.info("raw floor: in-process task.score per call")
        floor_results = floor.run(
            models, [s.rows for s in scenarios], QUICK_FLOOR_BUDGET_S if args.quick else FLOOR_BUDGET_S
        )

    process_counts: dict[str, int] = {}

    def record(variant: Variant, server: Server) -> None:
        process_counts[variant.key] = len(server.tree())

    plan = runner.Plan(variants, models, scenarios, duration, args.repeat)
    logger.info("%d load points x %d runs, %.0f s each (+%.0f s warm-up)", plan.size, plan.repeats, duration, WARMUP_S)
    points = runner.run(plan, store, store / "servers", source, bodies, on_server=record, expected=expected)
    databases = [] if args.no_feedback else args.feedback_databases
    feedback_results = feedback.run(databases, store, store / "servers", source, duration)

    startups = startup.measure(store, {"this tree": source}, args.startup_runs)
    run = report.Run(
        facts,
        command,
        duration,
        WARMUP_S,
        points,
        floor_results,
        support,
        process_counts,
        machine.load_average(),
        args.repeat,
        feedback_results,
        floor.quality([m for m in BENCH_MODELS if m in models]),
        startup.median_make_serve_s(startups["this tree"]),
    )
    text = report.render(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    raw = {"points": [asdict(p) for p in points], "feedback": [asdict(f) for f in feedback_results]}
    (store / "last-run.json").write_text(json.dumps(raw, indent=1, default=str))
    section = startup.section(startups, machine.load_average(), command) if args.startup_runs else ""
    if section:
        startup.write_section(args.output, section)
    sys.stdout.write(text + section)
    logger.info("wrote %s", args.output)
    return 1 if any(p.error for p in points) or any(not f.ok for f in feedback_results) else 0


def write_startup(args: argparse.Namespace, store: Path, source: Path, command: str) -> int:
    sources = {"this tree": source}
    if args.startup_baseline is not None:
        sources = {f"baseline `{args.startup_baseline.name}`": args.startup_baseline.resolve(), **sources}
    results = startup.measure(store, sources, args.startup_runs)
    section = startup.section(results, machine.load_average(), command)
    startup.write_section(args.output, section)
    sys.stdout.write(section)
    logger.info("wrote the start-up section of %s", args.output)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        logger.error("interrupted: every server started was stopped; no report written")
        raise SystemExit(130) from None
