"""The report: docs/benchmarks.md, generated from one run's measurements (never edited by hand)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .config import MLSERVER_REFERENCE, SCENARIOS, TARGETS, VARIANTS, Targets
from .machine import Machine
from .results import FloorResult, Point

NA = "—"
PASS, FAIL, UNKNOWN = "pass", "**FAIL**", "n/a (not measured)"


@dataclass(frozen=True)
class Run:
    machine: Machine
    command: str
    duration_s: float
    warmup_s: float
    points: list[Point]
    floor: list[FloorResult]
    settings_support: dict[str, bool] = field(default_factory=dict)
    process_counts: dict[str, int] = field(default_factory=dict)
    load_after: str = ""
    repeats: int = 1


@dataclass(frozen=True)
class Target:
    name: str
    required: str
    measured: str
    status: str


# ---------------------------------------------------------------- formatting


def number(value: float | None, digits: int = 0) -> str:
    return NA if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None) -> str:
    return NA if value is None else f"{value:.2f}x"


def percent(value: float | None) -> str:
    return NA if value is None else f"{value:+.1f} %"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def divide(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


# ---------------------------------------------------------------- lookups


def find(points: Sequence[Point], variant: str, model: str, scenario: str) -> Point | None:
    """The successfully measured point, if any."""
    for point in points:
        if point.ok and (point.variant.key, point.model, point.scenario.key) == (variant, model, scenario):
            return point
    return None


def req_per_s(points: Sequence[Point], variant: str, model: str, scenario: str) -> float | None:
    point = find(points, variant, model, scenario)
    return None if point is None or point.wrk is None else point.wrk.req_per_s


def models_of(points: Sequence[Point]) -> list[str]:
    return list(dict.fromkeys(p.model for p in points))


# ---------------------------------------------------------------- tables


def model_table(points: Sequence[Point], model: str) -> str:
    rows = []
    for point in points:
        if point.model != model:
            continue
        head = [point.variant.label, point.scenario.label]
        if point.wrk is None:
            rows.append([*head, *([NA] * 8)])
            continue
        w = point.wrk
        errors = str(w.errors) if not w.errors else f"{w.errors} (non-2xx {w.non_2xx}, socket {w.errors - w.non_2xx})"
        rows.append(
            [
                *head,
                number(w.req_per_s),
                number(point.rows_per_s),
                number(w.p50_ms, 2),
                number(w.p99_ms, 2),
                ratio(point.tail_ratio),
                errors,
                number(point.cpu_ms_per_request, 2),
                number(point.rss_mb),
            ]
        )
    headers = ["variant", "scenario", "req/s", "rows/s", "p50 ms", "p99 ms", "p99/p50", "errors", "server CPU ms/req"]
    text = table([*headers, "RSS MB"], rows)
    failures = [p for p in points if p.model == model and p.error]
    if failures:
        text += "\n\n" + "\n".join(
            f"- not measured, {p.variant.label}, {p.scenario.label}: {p.error}" for p in failures
        )
    return text


def floor_table(floor: Sequence[FloorResult]) -> str:
    return table(
        ["model", "rows", "BLAS threads", "median µs/call", "p90 µs/call", "calls", "ceiling calls/s (1/median)"],
        [
            [
                f.model,
                str(f.rows),
                str(f.blas_threads),
                number(f.median_us, 1),
                number(f.p90_us, 1),
                number(f.calls),
                number(1e6 / f.median_us),
            ]
            for f in floor
        ],
    )


def baseline_table(points: Sequence[Point]) -> str:
    rows = []
    for model in models_of(points):
        for scenario in SCENARIOS:
            base = req_per_s(points, "baseline", model, scenario.key)
            one = req_per_s(points, "default", model, scenario.key)
            two = req_per_s(points, "workers2", model, scenario.key)
            if base is None and one is None and two is None:
                continue
            rows.append(
                [model, scenario.label, number(one), number(two), number(base), ratio(divide(one, base)),
                 ratio(divide(two, base))]
            )  # fmt: skip
    return table(
        ["model", "scenario", "service 1 worker req/s", "service 2 workers req/s", "FastAPI req/s",
         "1 worker / FastAPI", "2 workers / FastAPI"],
        rows,
    )  # fmt: skip


def mlserver_table(points: Sequence[Point]) -> str:
    rows = []
    for ref in MLSERVER_REFERENCE:
        scenario = next(s for s in SCENARIOS if s.key == ref.scenario)
        one = req_per_s(points, "default", ref.model, ref.scenario)
        two = req_per_s(points, "workers2", ref.model, ref.scenario)
        rows.append(
            [ref.model, scenario.label, number(ref.req_per_s), number(one), ratio(divide(one, ref.req_per_s)),
             number(two), ratio(divide(two, ref.req_per_s))]
        )  # fmt: skip
    return table(
        ["model", "scenario", "MLServer req/s (reference)", "service 1 worker req/s", "ratio",
         "service 2 workers req/s", "ratio"],
        rows,
    )  # fmt: skip


def on_off_table(points: Sequence[Point], off_variant: str, what: str) -> str:
    """Default (feature on) against `off_variant`, per model and scenario both were measured on."""
    rows = []
    for model in models_of(points):
        for scenario in SCENARIOS:
            on = req_per_s(points, "default", model, scenario.key)
            off = req_per_s(points, off_variant, model, scenario.key)
            if on is None or off is None:
                continue
            change = divide(on - off, off)
            rows.append(
                [model, scenario.label, number(on), number(off), ratio(divide(on, off)),
                 percent(None if change is None else 100 * change)]
            )  # fmt: skip
    return table(
        ["model", "scenario", f"{what} on req/s", f"{what} off req/s", "on / off", f"req/s change with {what} on"],
        rows,
    )


def tail_table(points: Sequence[Point]) -> str:
    rows = []
    for variant in VARIANTS:
        for model in models_of(points):
            cells = [find(points, variant.key, model, s.key) for s in SCENARIOS]
            if all(c is None for c in cells):
                continue
            rows.append([variant.label, model, *(NA if c is None else ratio(c.tail_ratio) for c in cells)])
    return table(["variant", "model", *(s.label for s in SCENARIOS)], rows)


# ---------------------------------------------------------------- targets


def status(ok: bool | None) -> str:
    return UNKNOWN if ok is None else PASS if ok else FAIL


def targets(points: Sequence[Point], goals: Targets = TARGETS) -> list[Target]:
    found: list[Target] = []
    reference = next(r for r in MLSERVER_REFERENCE if (r.model, r.scenario) == ("breast_cancer", "1x16"))
    service = req_per_s(points, "default", "breast_cancer", "1x16")
    vs_ml = divide(service, reference.req_per_s)
    found.append(
        Target(
            "breast_cancer, 1 row, 16 conns: service 1 worker vs MLServer",
            f"≥ {goals.mlserver_ratio:.1f}x ({reference.req_per_s:,.0f} req/s)",
            NA if vs_ml is None else f"{service:,.0f} req/s = {vs_ml:.2f}x",
            status(None if vs_ml is None else vs_ml >= goals.mlserver_ratio),
        )
    )
    base = req_per_s(points, "baseline", "breast_cancer", "1x16")
    vs_base = divide(service, base)
    found.append(
        Target(
            "breast_cancer, 1 row, 16 conns: service 1 worker vs FastAPI baseline",
            f"≥ {goals.baseline_ratio:.1f}x",
            NA if vs_base is None else f"{service:,.0f} vs {base:,.0f} req/s = {vs_base:.2f}x",
            status(None if vs_base is None else vs_base >= goals.baseline_ratio),
        )
    )
    on = req_per_s(points, "default", "digits", "1x16")
    off = req_per_s(points, "batching_off", "digits", "1x16")
    batching = divide(on, off)
    found.append(
        Target(
            "digits, 1 row, 16 conns: batching on vs off",
            f"≥ {goals.batching_ratio:.1f}x",
            NA if batching is None else f"{on:,.0f} vs {off:,.0f} req/s = {batching:.2f}x",
            status(None if batching is None else batching >= goals.batching_ratio),
        )
    )
    found.append(tail_target(points, goals))
    found.append(monitoring_target(points, goals))
    return found


def tail_target(points: Sequence[Point], goals: Targets) -> Target:
    measured = [(p, p.tail_ratio) for p in points if p.ok and not p.variant.baseline and p.tail_ratio is not None]
    name, required = "p99 / p50 at every service point", f"≤ {goals.max_p99_over_p50:.0f}x"
    if not measured:
        return Target(name, required, NA, UNKNOWN)
    worst, worst_ratio = max(measured, key=lambda item: item[1] or 0.0)
    over = sum(1 for _, r in measured if r is not None and r > goals.max_p99_over_p50)
    text = (
        f"worst {ratio(worst_ratio)} ({worst.variant.label}, {worst.model}, {worst.scenario.label}); "
        f"{over} of {len(measured)} points over"
    )
    return Target(name, required, text, status(over == 0))


def monitoring_target(points: Sequence[Point], goals: Targets) -> Target:
    name, required = (
        "monitoring on vs off, every point measured both ways",
        f"≤ {100 * goals.max_monitoring_cost:.0f} % fewer req/s",
    )
    costs = []
    for off_point in (p for p in points if p.ok and p.variant.key == "monitoring_off"):
        on = req_per_s(points, "default", off_point.model, off_point.scenario.key)
        off = off_point.wrk.req_per_s if off_point.wrk else None
        cost = None if on is None or off is None else divide(off - on, off)
        if cost is not None:
            costs.append((off_point, cost))
    if not costs:
        return Target(name, required, NA, UNKNOWN)
    worst, worst_cost = max(costs, key=lambda item: item[1])
    over = sum(1 for _, c in costs if c > goals.max_monitoring_cost)
    text = (
        f"worst {100 * worst_cost:.1f} % fewer ({worst.model}, {worst.scenario.label}); "
        f"{over} of {len(costs)} points over"
    )
    return Target(name, required, text, status(over == 0))


def targets_table(found: Sequence[Target]) -> str:
    return table(
        ["target", "required", "measured", "result"], [[t.name, t.required, t.measured, t.status] for t in found]
    )


# ---------------------------------------------------------------- the document


def notes(run: Run) -> list[str]:
    found = [
        "wrk is closed loop: each connection sends its next request only when the previous answer has arrived, so "
        "its percentiles are not corrected for coordinated omission. A server stall delays the requests that would "
        "have been sent during it, which are then never counted as slow: a stall shows as p99 far above p50, and "
        "the true tail is worse than the p99 printed. `wrk2` (constant rate, corrected) is not packaged by Debian "
        "bookworm, so it is not used.",
        "The load generator runs on the same machine as the server (2 cores, shared with other work): wrk's own "
        "CPU competes with the server's. Absolute figures are therefore lower and noisier than with a separate "
        "client; the ratios compare points of the same run.",
        "Server CPU is user + system seconds of the whole server process tree (arbiter and workers, via psutil) "
        "over the measured run, divided by the requests wrk completed; RSS is the sum over the tree after the run.",
        f"Each point: one unmeasured {run.warmup_s:.0f} s wrk warm-up, then the measured {run.duration_s:.0f} s "
        "run; threads = min(2, connections), every request the same JSON body "
        '(`{"model": name, "instances": rows}`, held-out rows).',
        f"All variant servers run at once and each (model, scenario) is measured on every variant back to back, "
        f"{run.repeats} time(s), variants alternating; the run with the median req/s is reported. Ratios thus "
        "compare figures taken minutes apart, not a whole matrix apart, on a machine whose load drifts.",
        "The FastAPI baseline answers the full score matrix (`task.score(X)`; flat_1000: 1,000 probabilities per "
        "row) while the service answers decisions (label, confidence, id per row); its flat_1000 figures include "
        "that larger response.",
        "Every server ran from a copy of service/, models/ and bench/ taken when the run started (`.bench/src/`), "
        "so all variants measured the same code, the tree of the git line above.",
        "The MLServer figures are constants (issue #4 reference, measured earlier on this machine), not part of "
        "this run.",
    ]
    served = [path for path in run.machine.changed if path.startswith(("service/", "models/"))]
    if served:
        found.append(
            "The measured tree differed from its commit in the served code (" + ", ".join(served) + "): the "
            "service figures are of that working tree, not of the commit alone."
        )
    found += blas_notes(run.floor)
    for name in ("monitoring", "batching"):
        if run.settings_support and not run.settings_support.get(name, False):
            found.append(
                f"`CLF_{name.upper()}` was passed to the servers, but service/settings.py of the measured tree does "
                f"not define it, so the service ignored it: the '{name} off' variant ran with the default, and the "
                f"{name} on/off ratios measure only run-to-run noise."
            )
    if run.process_counts:
        counts = ", ".join(f"{v.label}: {run.process_counts[v.key]}" for v in VARIANTS if v.key in run.process_counts)
        found.append(f"Processes in each server's tree once ready (arbiter + workers): {counts}.")
    return found


def blas_notes(floor: Sequence[FloorResult]) -> list[str]:
    """Where the multi-threaded BLAS pool made a model call much slower than one thread did."""
    found = []
    for f in floor:
        single = next((g for g in floor if (g.model, g.rows, g.blas_threads) == (f.model, f.rows, 1)), None)
        if f.blas_threads > 1 and single is not None and f.median_us > 2 * single.median_us:
            found.append(
                f"Raw floor, {f.model} with {f.rows} rows: {f.median_us:,.0f} µs per call with the "
                f"{f.blas_threads}-thread BLAS pool the servers run with, {single.median_us:,.0f} µs with one thread: "
                "on this busy 2-core machine the BLAS threads wait for a core. The servers (service and baseline) "
                "run with the default pool."
            )
    return found


def render(run: Run) -> str:
    points = run.points
    parts = [
        "# Benchmarks",
        "Generated by `python -m bench` (`make bench`) from one run; do not edit by hand, re-run it. "
        "`bench/` holds the harness, `bench/config.py` the scenarios, variants, reference figures and targets.",
        "## Machine and command",
        table(["what", "value"], [*run.machine.rows(), ("load average after the run", run.load_after or NA)]),
        f"Command: `{run.command}`",
        "## Targets",
        targets_table(targets(points)),
    ]
    for model in models_of(points):
        parts += [f"## {model}", model_table(points, model)]
    parts += [
        "## Raw floor (in-process `task.score`, no HTTP)",
        "Median of single in-process calls of `load_model(tag).task.score(X)` (flat models: `predict_proba`; "
        "hierarchical: the greedy path, one classifier per level), measured before any server starts; with the BLAS "
        "thread pool as the servers have it and, when that is more than one thread, again limited to one.",
        floor_table(run.floor) if run.floor else "(not measured in this run)",
        "## Ratios",
        "### Service vs FastAPI baseline (req/s)",
        baseline_table(points),
        "### Service vs MLServer reference (req/s)",
        mlserver_table(points),
        "### Batching on vs off (1 worker)",
        on_off_table(points, "batching_off", "batching"),
        "### Monitoring on vs off (1 worker)",
        on_off_table(points, "monitoring_off", "monitoring"),
        "### p99 / p50 per scenario",
        tail_table(points),
        "## Notes",
        "\n".join(f"- {note}" for note in notes(run)),
    ]
    return "\n\n".join(parts) + "\n"
